from __future__ import annotations

from localmodel.local.supervisor import restart_delay


def test_restart_delay_doubles_per_quick_crash_and_is_capped() -> None:
    assert [restart_delay(n) for n in (0, 1, 2, 3, 4, 5, 6, 20)] == [1, 1, 2, 4, 8, 16, 30, 30]
