"""What turning repacking off costs: llama.cpp's prompt and generation speed with and without its extra
CPU buffer types (`use_extra_bufts`, the switch the AMX fix turns off), per model and quantisation.

Each model is loaded through the backend's own engine (`repack:on` / `repack:off`), so the figures are
for exactly what the backend loads. Prompt processing: one decode of `--prompt` tokens; generation:
`--tokens` single-token decodes after it (llama-bench's pp/tg). The two modes alternate per round, and
the median of each is compared. The Q4_0 model is Gemma requantised from its Q4_K_M file (made once,
cached beside the test models): Q4_0 is the type llama.cpp repacks the most on x86 and ARM.

    python -m bench.repack_throughput [--models smollm2 gemma3 gemma3-q4_0] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import statistics
import time
from pathlib import Path

import llama_cpp
from rich.console import Console
from rich.table import Table

from bench.machine import CpuWatch, describe
from localmodel_llamacpp.engine import LlamaEngine, repack_decision
from localmodel_llamacpp.options import LoadConfig
from scripts.model_files import ensure_model

CONTEXT = 1024
MODES = ("on", "off")


def q4_0_model() -> Path:
    """Gemma-3-270M requantised to Q4_0 (requantising loses a little quality; speed is what we compare)."""
    source = ensure_model("gemma3")
    target = source.with_name("gemma-3-270m-requantised.q4_0.gguf")
    if not target.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
        params.allow_requantize = True
        params.nthread = 2
        partial = target.with_suffix(".partial")
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(partial).encode(), ctypes.byref(params)
        )
        if status != 0:
            raise SystemExit(f"llama_model_quantize failed with {status}")
        partial.replace(target)
    return target


# name → (quantisation, how to get the file)
MODELS = {
    "smollm2": ("Q4_1", lambda: ensure_model("smollm2")),  # no repacked x86 kernel for Q4_1
    "gemma3": ("Q4_K_M", lambda: ensure_model("gemma3")),  # its Q4_K layers repack; Q5_0/Q6_K/Q8_0 do not
    "gemma3-q4_0": ("Q4_0", q4_0_model),
}


def decode_speed(llama: llama_cpp.Llama, prompt_tokens: int, new_tokens: int) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) of raw llama_decode calls on a cleared context."""
    ctx = llama.ctx
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    token = llama.token_bos() if llama.token_bos() >= 0 else 1
    prompt = (llama_cpp.llama_token * prompt_tokens)(*([token] * prompt_tokens))
    started = time.perf_counter()
    if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(prompt, prompt_tokens)) != 0:
        raise RuntimeError("prompt decode failed")
    prompt_seconds = time.perf_counter() - started
    one = (llama_cpp.llama_token * 1)(token)
    started = time.perf_counter()
    for _ in range(new_tokens):
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) != 0:
            raise RuntimeError("token decode failed")
    return prompt_tokens / prompt_seconds, new_tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens per round")
    parser.add_argument("--tokens", type=int, default=128, help="generated tokens per round")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    console = Console(width=120)
    machine = describe(("llama-cpp-python",))
    console.print(f"[bold]machine[/]: {machine}")
    console.print(f"[bold]auto here[/]: {repack_decision('auto').reason}")

    table = Table(title=f"repack on vs off, {args.threads} threads, median of {args.rounds} rounds")
    for column in ("model", "repacked", "prompt on", "prompt off", "on/off", "gen on", "gen off", "on/off"):
        table.add_column(column, justify="right" if column != "model" else "left")
    watch = CpuWatch()
    for name in args.models:
        quantisation, get_path = MODELS[name]
        path = get_path()
        engines: dict[str, LlamaEngine] = {}
        for mode in MODES:
            engines[mode] = LlamaEngine()
            engines[mode].load(
                LoadConfig(model_path=path, context_size=CONTEXT, threads=args.threads, repack=mode)
            )
        speeds: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:  # alternating: drift in the machine's speed hits both alike
                speeds[mode].append(decode_speed(engines[mode].llama, args.prompt, args.tokens))
        prompt = {mode: statistics.median(s[0] for s in speeds[mode]) for mode in MODES}
        gen = {mode: statistics.median(s[1] for s in speeds[mode]) for mode in MODES}
        repacked = sum(mib for buffer, mib in engines["on"].weight_buffers.items() if buffer != "CPU_Mapped")
        mapped = sum(engines["on"].weight_buffers.values())
        table.add_row(
            f"{name} {quantisation}",
            f"{repacked:.0f} of {mapped:.0f} MiB",
            f"{prompt['on']:.0f}",
            f"{prompt['off']:.0f}",
            f"{prompt['on'] / prompt['off']:.2f}×",
            f"{gen['on']:.1f}",
            f"{gen['off']:.1f}",
            f"{gen['on'] / gen['off']:.2f}×",
        )
        for engine in engines.values():
            engine.llama.close()
        watch.mark()
    console.print(table)
    busiest = max(share.others_share(machine["nproc"]) for share in watch.intervals)
    console.print(f"other processes and steal used at most {busiest:.0%} of the CPUs during a model's run")


if __name__ == "__main__":
    main()
