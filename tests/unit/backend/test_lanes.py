from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from localmodel_llamacpp.decoder import Admission, Request
from localmodel_llamacpp.engine import Prompt
from localmodel_llamacpp.lane import SMALL_MODEL_BYTES, Lane, default_lanes, split, wide_steps
from localmodel_llamacpp.options import LoadConfig, SamplingConfig
from localmodel_llamacpp.samplers import SamplerChain
from tests.support.waiting import wait_until


@pytest.mark.parametrize(
    ("total", "parts", "shares"),
    [(8, 2, [4, 4]), (5, 2, [3, 2]), (4, 3, [2, 1, 1]), (2, 1, [2]), (1, 2, [1, 0])],
)
def test_split_shares_evenly_with_the_larger_shares_first(total: int, parts: int, shares: list[int]) -> None:
    assert split(total, parts) == shares
    assert sum(shares) == total


def model_of_size(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "model.gguf"
    with path.open("wb") as file:
        file.truncate(size)  # sparse: only the size matters
    return path


def test_a_small_model_on_a_cpu_with_two_threads_gets_two_lanes(tmp_path: Path) -> None:
    config = LoadConfig(model_path=model_of_size(tmp_path, 100 * 2**20), threads=2)
    assert default_lanes(config, slots=4) == 2


@pytest.mark.parametrize(
    ("change", "slots"),
    [
        ({"gpu_layers": -1}, 4),  # a GPU batches every sequence in one step best
        ({"threads": 1}, 4),  # nothing to share out
        ({}, 1),  # one slot: one lane
        ({"size": SMALL_MODEL_BYTES + 1}, 4),  # not measured to gain: left at one lane
    ],
)
def test_one_lane_otherwise(tmp_path: Path, change: dict[str, int], slots: int) -> None:
    fields = {"threads": 2, **change}
    size = fields.pop("size", 100 * 2**20)
    config = LoadConfig(model_path=model_of_size(tmp_path, size), **fields)  # type: ignore[arg-type]
    assert default_lanes(config, slots) == 1


class CountingDecoder:
    """Stands in for BatchDecoder (which needs a model): a sequence is a number of steps left."""

    def __init__(self, slots: int) -> None:
        self.slots = [None] * slots
        self.remaining: list[int] = []
        self.threads_seen: list[int] = []
        self.stepped_on: set[tuple[int, str]] = set()  # (threads, the OS thread that ran the step)
        self.steps = 0
        self.closed = False

    @property
    def active(self) -> int:
        return len(self.remaining)

    @property
    def free_slots(self) -> int:
        return len(self.slots) - self.active

    def start(self, admission: Admission) -> None:
        if not admission.request.cancelled.is_set():
            self.remaining.append(admission.max_new)

    def set_threads(self, threads: int) -> None:
        self.threads_seen.append(threads)

    def step(self) -> None:
        self.stepped_on.add((self.threads_seen[-1], threading.current_thread().name.split("_")[0]))
        self.steps += 1
        self.remaining = [left - 1 for left in self.remaining if left > 1]
        time.sleep(0.002)

    def fail_all(self, _error: Exception) -> None:
        self.remaining = []

    def close(self) -> None:
        self.closed = True


def admission(steps: int, cancelled: bool = False) -> Admission:
    flag = threading.Event()
    if cancelled:
        flag.set()
    request = Request(Prompt(text="x"), SamplingConfig(), lambda _item: None, flag)
    return Admission(request, [1, 2, 3], SamplerChain.__new__(SamplerChain), steps)


def lanes_over(decoders: list[CountingDecoder], threads: int, wake: threading.Condition) -> list[Lane]:
    lanes: list[Lane] = []
    wide = wide_steps()
    lanes += [Lane(i, d, threads, wake, lanes, wide) for i, d in enumerate(decoders)]  # type: ignore[arg-type]
    for lane in lanes:
        lane.start()
    return lanes


def test_a_lone_busy_lane_gets_every_thread_and_busy_lanes_share_them() -> None:
    wake = threading.Condition()
    first, second = CountingDecoder(2), CountingDecoder(2)
    lanes = lanes_over([first, second], 2, wake)
    with wake:
        lanes[0].place(admission(20))
    wait_until(lambda: first.steps == 20 and first.active == 0, "the lone request done")
    assert set(first.threads_seen) == {2}  # alone: both threads
    first.threads_seen.clear()
    with wake:
        lanes[0].place(admission(200))
        lanes[1].place(admission(200))
    wait_until(lambda: first.steps == 220 and second.steps == 200, "both lanes done")
    assert first.threads_seen.count(1) > 150 and second.threads_seen.count(1) > 150  # one each, mostly
    # A lane alone stepped on the one wide thread (one OpenMP team per process), whichever lane it was;
    # lanes sharing the threads on their own.
    assert {(2, "llama-wide"), (1, "llama-lane-0")} <= first.stepped_on
    assert {threads for threads, _ in first.stepped_on | second.stepped_on} == {1, 2}
    assert all(
        (threads > 1) == (name == "llama-wide") for threads, name in first.stepped_on | second.stepped_on
    )
    for lane in lanes:
        lane.stop()
    assert first.closed and second.closed


def test_lanes_sharing_more_threads_still_step_side_by_side_on_their_own_threads() -> None:
    wake = threading.Condition()
    first, second = CountingDecoder(1), CountingDecoder(1)
    lanes = lanes_over([first, second], 4, wake)
    with wake:
        lanes[0].place(admission(200))
        lanes[1].place(admission(200))
    wait_until(lambda: first.steps == 200 and second.steps == 200, "both lanes done")
    assert (2, "llama-lane-0") in first.stepped_on and (2, "llama-lane-1") in second.stepped_on
    assert all(name != "llama-wide" for threads, name in first.stepped_on | second.stepped_on if threads == 2)
    for lane in lanes:
        lane.stop()


def test_a_request_cancelled_before_it_started_does_not_stop_the_lane() -> None:
    wake = threading.Condition()
    decoder = CountingDecoder(1)
    (lane,) = lanes_over([decoder], 2, wake)
    with wake:
        lane.place(admission(5, cancelled=True))
    wait_until(lambda: not lane.inbox, "the cancelled request taken")
    with wake:
        lane.place(admission(5))
    wait_until(
        lambda: decoder.steps >= 5 and decoder.active == 0, "the next request served"
    )  # the lane still serves
    lane.stop()
