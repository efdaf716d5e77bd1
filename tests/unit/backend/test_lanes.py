from __future__ import annotations

from pathlib import Path

import pytest

from localmodel_llamacpp.lane import SMALL_MODEL_BYTES, default_lanes, split
from localmodel_llamacpp.options import LoadConfig


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
