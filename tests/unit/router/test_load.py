from __future__ import annotations

from localmodel_router.load import ModelLoad


def test_idle_time_counts_from_the_last_request_and_is_zero_while_busy() -> None:
    now = [100.0]
    load = ModelLoad(clock=lambda: now[0])
    now[0] = 130.0
    assert load.idle_seconds("m") == 30.0  # never asked: idle since the router started
    with load.track("m"):
        now[0] = 200.0
        assert (load.active("m"), load.idle_seconds("m")) == (1, 0.0)
    now[0] = 205.0
    assert (load.active("m"), load.idle_seconds("m")) == (0, 5.0)
