"""A LocalModel spec → the planner's inputs: the settings the backend will really run with.

The one mapping, for `localmodel plan`, local mode and the operator. Where the spec leaves a choice to
the backend, this makes the same choice the backend makes at load (its slot and lane defaults, mirrored
here because the core never imports the backend; tests/unit/core/test_fit_inputs.py holds them equal).
"""

from __future__ import annotations

from localmodel.fit import MIB, RAM_RESERVE, PlanInput
from localmodel.spec import LocalModelSpec

DEFAULT_CONTEXT_SIZE = 4096  # options.DEFAULT_CONTEXT_SIZE
MAX_KV_TOKENS = 16384  # decoder.MAX_KV_TOKENS: slots x context the default slot count stays within
SMALL_MODEL_BYTES = 512 * 1024 * 1024  # lane.SMALL_MODEL_BYTES: two lanes for a small model on 2+ CPUs
DEFAULT_PROMPT_CACHE_RAM_MIB = 256  # options.DEFAULT_PROMPT_CACHE_RAM_MIB: prompts kept in host memory


def plan_input(
    spec: LocalModelSpec,
    model_file_bytes: int,
    *,
    threads: int,
    gpu_memory_bytes: int | None = None,
    ram_bytes: int | None = None,
) -> PlanInput:
    """`threads`: the CPUs the backend gets (a spec's `threads` wins); `gpu_memory_bytes`: per GPU;
    `ram_bytes`: the memory the backend may use (None: not checked)."""
    engine = spec.backend.engine
    context = engine.context_size or DEFAULT_CONTEXT_SIZE
    slots = engine.parallel or max(1, min(4, MAX_KV_TOKENS // context))
    gpus = spec.resources.gpu.count if spec.resources.gpu is not None else 0
    gpu_layers = engine.gpu_layers if engine.gpu_layers is not None else (-1 if gpus else 0)
    threads = engine.threads or threads
    return PlanInput(
        context_size=context,
        slots=slots,
        lanes=_lanes(engine.options, gpu_layers, threads, slots, model_file_bytes),
        flash_attention=engine.flash_attention == "on",
        gpu_layers=gpu_layers,
        gpus=gpus,
        gpu_memory_bytes=gpu_memory_bytes,
        ram_bytes=ram_bytes,
        embeddings=spec.loads_embeddings,
        # The backend's own memory, and the prompts it keeps in host memory (batch decoders only).
        ram_reserve_bytes=RAM_RESERVE + (0 if spec.loads_embeddings else _prompt_cache_ram(engine.options)),
    )


def _prompt_cache_ram(options: list[str]) -> int:
    mib = _number_option(options, "prompt_cache_ram")
    return (DEFAULT_PROMPT_CACHE_RAM_MIB if mib is None else mib) * MIB


def _lanes(options: list[str], gpu_layers: object, threads: int, slots: int, file_bytes: int) -> int:
    lanes = _number_option(options, "lanes")
    if lanes is not None:
        return lanes
    if gpu_layers != 0 or threads < 2 or slots < 2:  # lane.default_lanes
        return 1
    return 2 if file_bytes <= SMALL_MODEL_BYTES else 1


def _number_option(options: list[str], name: str) -> int | None:
    """The backend option `name:N`'s N, if the spec gives one (the backend refuses a malformed one)."""
    for option in options:
        key, _, value = option.partition(":")
        if key == name and value.isdigit():
            return int(value)
    return None
