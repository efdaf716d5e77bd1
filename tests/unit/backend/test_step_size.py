from __future__ import annotations

from collections.abc import Callable

import pytest

from localmodel_llamacpp.step_size import REFRESH_EVERY, StepSizer, candidate_sizes


@pytest.mark.parametrize(
    ("ready", "sizes"), [(1, [1]), (2, [2, 1]), (4, [4, 2, 1]), (6, [6, 4, 2, 1]), (8, [8, 4, 2, 1])]
)
def test_candidates_are_the_ready_count_and_smaller_powers_of_two(ready: int, sizes: list[int]) -> None:
    assert candidate_sizes(ready) == sizes


def run(sizer: StepSizer, ready: int, step_seconds: Callable[[int], float], steps: int) -> list[int]:
    chosen = []
    for _ in range(steps):
        size = sizer.size(ready)
        assert 1 <= size <= ready
        sizer.record(size, step_seconds(size))
        chosen.append(size)
    return chosen


def test_where_a_step_costs_the_same_at_any_size_it_takes_every_ready_sequence() -> None:
    chosen = run(StepSizer(), 8, lambda _size: 0.010, 200)
    assert chosen[:4] == [8, 4, 2, 1]  # each size measured once, the full batch first
    settled = [size for step, size in enumerate(chosen) if step >= 4 and step % REFRESH_EVERY]
    assert set(settled) == {8}  # and between re-measurements, nothing but the full batch


def test_where_batching_costs_more_per_token_it_steps_sequences_in_turn() -> None:
    # SmolLM2-135M on one core: 5.9 ms for one token, 15.0 for two, 26.2 for four (measured).
    timings = {1: 0.0059, 2: 0.0150, 4: 0.0262}
    chosen = run(StepSizer(), 4, timings.__getitem__, 200)
    assert chosen.count(1) > 190


def test_stale_sizes_are_measured_again_so_a_change_is_followed() -> None:
    sizer = StepSizer()
    slow_batches = {1: 0.005, 2: 0.015}
    assert run(sizer, 2, slow_batches.__getitem__, 100)[-30:].count(1) >= 29
    cheap_batches = {1: 0.005, 2: 0.006}  # e.g. the machine's other load went away
    chosen = run(sizer, 2, cheap_batches.__getitem__, 400)
    assert chosen[-50:].count(2) >= 45
