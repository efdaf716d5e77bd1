"""What llama.cpp allocates when our backend loads a model: its own buffer sizes, from its log.

Run in a process of its own (llama.cpp has one log callback per process, and the backend's engine sets
one to keep only warnings):

    python -m tests.support.llama_buffers MODEL '[{"context_size": 2048, "slots": 4, "lanes": 2}]'

Each case is loaded the way the backend loads it (BatchingScheduler over LlamaEngine, so every context
the backend makes is made), with llama.cpp's log captured; the output is one JSON object per case with
the MiB of each kind of buffer, summed over the process's contexts:
{"model": {"CPU_Mapped": 92.1}, "kv": 191.25, "compute": 123.09, "output": 0.95, "contexts": 3} (SmolLM2,
2048 tokens, 4 slots in 2 lanes).

A case with `"raw": true` makes one llama.cpp context itself instead, with settings the backend does
not expose (`n_ctx`, `n_seq`, `n_ubatch`, `swa_full`, `cache_type`, `flash_attention`).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LINE = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")
_REPO = Path(__file__).resolve().parents[2]
_GGML_TYPE_NUMBERS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}


@dataclass(frozen=True)
class Buffers:
    """MiB per kind of buffer, as llama.cpp printed them, summed over one load's contexts."""

    model: dict[str, float]  # per buffer type: CPU_Mapped, CPU_REPACK, CUDA0, ...
    kv: float
    compute: float
    output: float
    contexts: int


def parse_log(text: str) -> Buffers:
    """Buffer sizes from llama.cpp's log lines ("sched_reserve:  CPU compute buffer size = 12.42 MiB");
    the lines a context prints when it is freed ("compute buffer size is ...") do not match."""
    model: dict[str, float] = {}
    sums = {"KV": 0.0, "compute": 0.0, "output": 0.0}
    for buffer_type, kind, mib in _LINE.findall(text):
        if kind == "model":
            model[buffer_type] = model.get(buffer_type, 0.0) + float(mib)
        else:
            sums[kind] += float(mib)
    contexts = text.count("llama_context: constructing llama_context")
    return Buffers(model, sums["KV"], sums["compute"], sums["output"], contexts)


def measure(model: Path, cases: list[dict[str, Any]], timeout: float = 240) -> list[Buffers]:
    """Load `model` once per case in a child process and return what llama.cpp allocated for each."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.llama_buffers", str(model), json.dumps(cases)],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"loading {model.name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return [Buffers(**json.loads(line)) for line in result.stdout.splitlines() if line.startswith("{")]


def _main(model: Path, cases: list[dict[str, Any]]) -> None:
    import llama_cpp

    from localmodel_llamacpp.batching import BatchingScheduler
    from localmodel_llamacpp.engine import LlamaEngine
    from localmodel_llamacpp.options import LoadConfig

    lines: list[str] = []

    @llama_cpp.llama_log_callback  # type: ignore[misc]
    def keep(_level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))

    # After the engine's import, which sets its own callback: this one replaces it.
    llama_cpp.llama_log_set(keep, ctypes.c_void_p(0))

    async def load(case: dict[str, Any]) -> None:
        engine = LlamaEngine()
        scheduler = BatchingScheduler(engine)
        config = LoadConfig(
            model_path=model,
            context_size=case["context_size"],
            threads=2,
            lanes=case.get("lanes", 1),
            parallel=case["slots"],
            embeddings=case.get("embeddings", False),
            flash_attention=case.get("flash_attention", False),
        )
        await scheduler.load(config, case["slots"])
        scheduler.close()
        engine.llama.close()

    def load_raw(case: dict[str, Any]) -> None:
        model_params = llama_cpp.llama_model_default_params()
        model_params.use_extra_bufts = False  # the weights as the file has them: no repacked copies
        loaded = llama_cpp.llama_model_load_from_file(str(model).encode(), model_params)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max = case["n_ctx"], case["n_seq"]
        params.n_batch = params.n_ubatch = case["n_ubatch"]
        params.swa_full = case.get("swa_full", True)
        params.flash_attn_type = 1 if case.get("flash_attention") else 0
        params.type_k = params.type_v = _GGML_TYPE_NUMBERS[case.get("cache_type", "f16")]
        context = llama_cpp.llama_init_from_model(loaded, params)
        if not context:
            raise RuntimeError(f"llama.cpp made no context for {case}")
        llama_cpp.llama_free(context)
        llama_cpp.llama_model_free(loaded)

    for case in cases:
        lines.clear()
        if case.get("raw"):
            load_raw(case)
        else:
            asyncio.run(load(case))
        buffers = parse_log("".join(lines))
        sys.stdout.write(json.dumps(buffers.__dict__) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _main(Path(sys.argv[1]), json.loads(sys.argv[2]))
