"""Aggregate tokens/s of concurrent streams on one backend: continuous batching against one slot.

The same backend code serves both sides: `--parallel 8` (every stream in the same decode steps) and
`--parallel 1` (the one-at-a-time path: streams wait for the slot), plus llama-cpp-python called
in-process one stream after another, on the same model, threads, prompts and token counts. At each
concurrency every client streams its own prompt with end-of-text ignored, so every stream makes exactly
--tokens tokens; aggregate = all tokens / wall time.

    python -m bench.batching_throughput [--tokens 128] [--threads 2] [--concurrency 1,2,4,8]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import llama_cpp
from rich.console import Console
from rich.table import Table

from localmodel.wire import backend_pb2, backend_pb2_grpc
from localmodel_llamacpp.process import BackendProcess
from scripts.test_models import ensure_model

PROMPTS = [f"Write a long story about dragon number {n}." for n in range(8)]
CONTEXT = 1024


def request(n: int, tokens: int) -> backend_pb2.PredictOptions:
    return backend_pb2.PredictOptions(
        messages=[backend_pb2.Message(role="user", content=PROMPTS[n % len(PROMPTS)])],
        use_tokenizer_template=True,
        tokens=tokens,
        temperature=0,
        ignore_eos=True,
    )


def backend_rate(stub: backend_pb2_grpc.BackendStub, clients: int, tokens: int) -> float:
    def stream(n: int) -> None:
        *_, last = stub.PredictStream(request(n, tokens))
        assert last.tokens == tokens, last  # every stream made exactly its tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(stream, range(clients)))
    return clients * tokens / (time.perf_counter() - started)


def in_process_rate(llama: llama_cpp.Llama, clients: int, tokens: int) -> float:
    started = time.perf_counter()
    for n in range(clients):  # llama-cpp-python has one context: one stream at a time
        messages = [{"role": "user", "content": PROMPTS[n % len(PROMPTS)]}]
        llama.reset()
        for _ in llama.create_chat_completion(messages, max_tokens=tokens, temperature=0, stream=True):
            pass
    return clients * tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", default="1,2,4,8")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    model = ensure_model("smollm2")
    common = ["--model", str(model), "--context-size", str(CONTEXT), "--threads", str(args.threads)]
    rates: dict[str, dict[int, float]] = {}
    for name, parallel in (("batching, 8 slots", 8), ("one slot", 1)):
        with BackendProcess([*common, "--parallel", str(parallel)]) as backend:
            backend.wait_ready()
            with grpc.insecure_channel(backend.address) as channel:
                stub = backend_pb2_grpc.BackendStub(channel)
                backend_rate(stub, 1, 8)  # warm-up
                rates[name] = {level: backend_rate(stub, level, args.tokens) for level in levels}
    llama = llama_cpp.Llama(str(model), n_ctx=CONTEXT, n_threads=args.threads, verbose=False)
    in_process_rate(llama, 1, 8)
    rates["llama-cpp-python in-process"] = {
        level: in_process_rate(llama, level, args.tokens) for level in levels
    }

    table = Table(
        title=f"aggregate tokens/s, SmolLM2 Q4_1, {args.threads} threads, {args.tokens} tokens per stream"
    )
    table.add_column("system")
    for level in levels:
        table.add_column(f"{level} streams", justify="right")
    for name, by_level in rates.items():
        table.add_row(name, *(f"{by_level[level]:.1f}" for level in levels))
    batched, single = rates["batching, 8 slots"], rates["one slot"]
    in_process = rates["llama-cpp-python in-process"]
    table.add_row("batching ÷ one slot", *(f"{batched[level] / single[level]:.2f}×" for level in levels))
    table.add_row(
        "batching ÷ in-process", *(f"{batched[level] / in_process[level]:.2f}×" for level in levels)
    )
    table.add_row(
        "batching: level ÷ 1 stream", *(f"{batched[level] / batched[levels[0]]:.2f}×" for level in levels)
    )
    Console().print(table)


if __name__ == "__main__":
    main()
