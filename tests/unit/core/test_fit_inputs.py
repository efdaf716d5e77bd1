"""The planner's inputs make the choices the backend makes when a spec leaves them open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localmodel.fit import MIB, RAM_RESERVE
from localmodel.fit_inputs import plan_input
from localmodel.spec import LocalModelSpec
from localmodel_llamacpp.decoder import default_slots
from localmodel_llamacpp.lane import default_lanes
from localmodel_llamacpp.options import DEFAULT_CONTEXT_SIZE, LoadConfig


def spec(**fields: Any) -> LocalModelSpec:
    return LocalModelSpec.model_validate({"model": {"url": "file:///m.gguf"}, **fields})


@pytest.mark.parametrize("context", [None, 512, 2048, 4096, 8192, 32768])
def test_default_slots_are_the_backends(context: int | None) -> None:
    engine = {"contextSize": context} if context else {}
    planned = plan_input(spec(backend={"engine": engine}), 1, threads=2)
    assert planned.context_size == (context or DEFAULT_CONTEXT_SIZE)
    assert planned.slots == default_slots(planned.context_size)


@pytest.mark.parametrize(
    ("size", "threads", "parallel", "gpu_layers"),
    [
        (100 << 20, 2, 4, 0),
        (600 << 20, 2, 4, 0),
        (100 << 20, 1, 4, 0),
        (100 << 20, 2, 1, 0),
        (100 << 20, 8, 4, 5),
    ],
)
def test_default_lanes_are_the_backends(
    tmp_path: Path, size: int, threads: int, parallel: int, gpu_layers: int
) -> None:
    model = tmp_path / "m.gguf"
    with model.open("wb") as file:
        file.truncate(size)  # sparse: only the size counts
    engine = {"parallel": parallel, "gpuLayers": gpu_layers, "threads": threads}
    planned = plan_input(spec(backend={"engine": engine}), size, threads=99)
    config = LoadConfig(model_path=model, threads=threads, gpu_layers=gpu_layers)
    assert planned.lanes == default_lanes(config, parallel)


def test_spec_choices_pass_through() -> None:
    engine = {"contextSize": 1024, "parallel": 3, "flashAttention": "on", "options": ["lanes:3"]}
    planned = plan_input(
        spec(backend={"engine": engine}, resources={"gpu": {"count": 2}}, tasks=["embedding"]),
        1,
        threads=4,
        gpu_memory_bytes=24 << 30,
        ram_bytes=8 << 30,
    )
    assert (planned.context_size, planned.slots, planned.lanes) == (1024, 3, 3)
    assert planned.flash_attention and planned.embeddings
    assert (planned.gpus, planned.gpu_layers, planned.gpu_memory_bytes) == (2, -1, 24 << 30)
    assert planned.ram_bytes == 8 << 30


@pytest.mark.parametrize(
    ("options", "mib"), [([], None), (["prompt_cache_ram:1024"], 1024), (["prompt_cache_ram:0"], 0)]
)
def test_the_host_prompt_store_is_counted_as_the_backend_sizes_it(
    options: list[str], mib: int | None
) -> None:
    planned = plan_input(spec(backend={"engine": {"options": options}}), 1, threads=2)
    expected = LoadConfig(model_path=Path()).prompt_cache_ram if mib is None else mib
    assert planned.ram_reserve_bytes == RAM_RESERVE + expected * MIB
    embeddings = plan_input(spec(backend={"engine": {"options": options}}, tasks=["embedding"]), 1, threads=2)
    assert embeddings.ram_reserve_bytes == RAM_RESERVE  # served one at a time: no batch decoder, no store
