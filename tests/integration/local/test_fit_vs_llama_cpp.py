"""The fit plan against what llama.cpp itself allocates when our backend loads the same model.

Each case loads a real test model through the backend's own scheduler (every context it makes) in a
child process and reads llama.cpp's buffer sizes from its log (tests/support/llama_buffers.py): the
model buffer must be the planned weights, and the KV buffers of all contexts the planned KV cache,
within 5 %. Compute buffers are an estimate; they are held to 20 %.

Measured on an AMD EPYC (2 cores, AVX-512): weights and KV cache agree to the byte (to llama.cpp's
two printed decimals of MiB), compute to about 1 %.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localmodel.fit import MIB, ContextShape, FitPlan, PlanInput, plan_fit
from localmodel.gguf_header import read_header
from tests.support.llama_buffers import Buffers, measure
from tests.support.models import require_model

MODELS = ("smollm2", "gemma3")
# Two context sizes, one slot and four (in two lanes, the backend's default for a small model).
BACKEND_CASES: list[dict[str, Any]] = [
    {"context_size": context, "slots": slots, "lanes": min(slots, 2)}
    for context in (2048, 8192)
    for slots in (1, 4)
]
BACKEND_CASES += [
    {"context_size": 2048, "slots": 4, "lanes": 2, "flash_attention": True},
    {"context_size": 2048, "slots": 1, "embeddings": True},
]
# Settings the backend does not expose, in one context of llama.cpp's: a sliding window cache (Gemma's
# 15 windowed layers), quantized caches, an odd context padded per sequence.
RAW_CASES: list[dict[str, Any]] = [
    {"raw": True, "n_ctx": 3000, "n_seq": 3, "n_ubatch": 64, "swa_full": False},
    {"raw": True, "n_ctx": 2048, "n_seq": 1, "n_ubatch": 512, "cache_type": "q8_0", "flash_attention": True},
    {"raw": True, "n_ctx": 4096, "n_seq": 4, "n_ubatch": 64, "cache_type": "q4_0", "flash_attention": True},
]


@pytest.fixture(scope="module", params=MODELS)
def measured(request: pytest.FixtureRequest) -> tuple[Path, list[Buffers]]:
    path = require_model(request.param)
    return path, measure(path, BACKEND_CASES + RAW_CASES)


def close(planned: int, reported_mib: float, tolerance: float) -> bool:
    reported = reported_mib * MIB
    return abs(planned - reported) <= tolerance * reported


def check(plan: FitPlan, buffers: Buffers, contexts: int) -> None:
    assert buffers.contexts == len(plan.contexts) == contexts
    # With mmap the CPU model buffer maps all of the weights; a repacked copy of some (CPU_REPACK)
    # replaces the mapped pages it was made from, which are then never read again.
    assert close(plan.weights_bytes, buffers.model["CPU_Mapped"], 0.05), (plan.weights_bytes, buffers.model)
    assert close(plan.kv_cache_bytes, buffers.kv, 0.05), (plan.kv_cache_bytes / MIB, buffers.kv)
    reported_compute = buffers.compute + buffers.output
    assert close(plan.compute_bytes, reported_compute, 0.20), (plan.compute_bytes / MIB, reported_compute)


@pytest.mark.parametrize("case", range(len(BACKEND_CASES)))
def test_the_plan_for_the_backend_is_what_llama_cpp_allocates(
    measured: tuple[Path, list[Buffers]], case: int
) -> None:
    path, buffers = measured
    settings = BACKEND_CASES[case]
    plan = plan_fit(read_header(path), PlanInput(**settings))
    contexts = 1 if settings.get("embeddings") else 1 + settings.get("lanes", 1)
    check(plan, buffers[case], contexts)


@pytest.mark.parametrize("case", range(len(RAW_CASES)))
def test_the_plan_for_one_context_is_what_llama_cpp_allocates(
    measured: tuple[Path, list[Buffers]], case: int
) -> None:
    path, buffers = measured
    settings = RAW_CASES[case]
    spec = PlanInput(
        kv_cache_type=settings.get("cache_type", "f16"),
        flash_attention=settings.get("flash_attention", False),
        swa_full=settings.get("swa_full", True),
    )
    context = ContextShape("raw", settings["n_ctx"], settings["n_seq"], settings["n_ubatch"])
    check(plan_fit(read_header(path), spec, (context,)), buffers[len(BACKEND_CASES) + case], 1)
