"""Aggregate tokens/s of concurrent streams on one backend: continuous batching against one slot.

The same backend code serves every row: `--parallel 8` with the default two decode lanes and with one
(every stream in one lane's steps), and `--parallel 1` (the one-at-a-time path: streams wait for the
slot); plus llama-cpp-python called in-process one stream after another, on the same model, threads,
prompts and token counts. At each concurrency every client streams its own prompt with end-of-text
ignored, so every stream makes exactly --tokens tokens; aggregate = all tokens / wall time.

    python -m bench.batching_throughput [--model smollm2|gemma3] [--tokens 128] [--threads 2]
                                        [--concurrency 1,2,4,8]
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
from localmodel_llamacpp.engine import open_llama
from scripts.model_files import MODELS, ensure_model
from tests.support.backend_process import BackendProcess

PROMPTS = [f"Write a long story about dragon number {n}." for n in range(8)]
CONTEXT = 1024


def request(n: int, tokens: int) -> backend_pb2.PredictOptions:
    # Raw prompts, not chat messages: the same for an instruct model and a base model.
    return backend_pb2.PredictOptions(
        prompt=PROMPTS[n % len(PROMPTS)], tokens=tokens, temperature=0, ignore_eos=True
    )


def backend_rate(stub: backend_pb2_grpc.BackendStub, clients: int, tokens: int) -> float:
    def stream(n: int) -> None:
        *_, last = stub.PredictStream(request(n, tokens))
        assert last.tokens == tokens, last  # every stream made exactly its tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(stream, range(clients)))
    return clients * tokens / (time.perf_counter() - started)


def end_of_text_bans(llama: llama_cpp.Llama) -> dict[int, float]:
    """A logit bias that bans every end-of-generation token: this API has no ignore_eos."""
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    return {t: -float("inf") for t in range(llama.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}


def in_process_rate(llama: llama_cpp.Llama, bans: dict[int, float], clients: int, tokens: int) -> float:
    started = time.perf_counter()
    for n in range(clients):  # llama-cpp-python has one context: one stream at a time
        llama.reset()
        prompt = PROMPTS[n % len(PROMPTS)]
        stream = llama.create_completion(
            prompt, max_tokens=tokens, temperature=0, logit_bias=bans, stream=True
        )
        *_, last = stream
        assert last["choices"][0]["finish_reason"] == "length", last  # it made all its tokens
    return clients * tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", default="1,2,4,8")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    model = ensure_model(args.model)
    common = ["--model", str(model), "--context-size", str(CONTEXT), "--threads", str(args.threads)]
    rates: dict[str, dict[int, float]] = {}
    systems = {
        "batching, 8 slots, 2 lanes": ["--parallel", "8", "--lanes", "2"],
        "batching, 8 slots, 1 lane": ["--parallel", "8", "--lanes", "1"],
        "one slot": ["--parallel", "1"],
    }
    for name, options in systems.items():
        with BackendProcess([*common, *options]) as backend:
            backend.wait_ready()
            with grpc.insecure_channel(backend.address) as channel:
                stub = backend_pb2_grpc.BackendStub(channel)
                backend_rate(stub, 1, 8)  # warm-up
                rates[name] = {level: backend_rate(stub, level, args.tokens) for level in levels}
    llama = open_llama(model_path=str(model), n_ctx=CONTEXT, n_threads=args.threads, verbose=False)
    bans = end_of_text_bans(llama)
    in_process_rate(llama, bans, 1, 8)
    rates["llama-cpp-python in-process"] = {
        level: in_process_rate(llama, bans, level, args.tokens) for level in levels
    }

    table = Table(
        title=f"aggregate tokens/s, {model.name}, {args.threads} threads, {args.tokens} tokens per stream"
    )
    table.add_column("system")
    for level in levels:
        table.add_column(f"{level} streams", justify="right")
    for name, by_level in rates.items():
        table.add_row(name, *(f"{by_level[level]:.1f}" for level in levels))
    batched, single = rates["batching, 8 slots, 2 lanes"], rates["one slot"]
    one_lane, in_process = rates["batching, 8 slots, 1 lane"], rates["llama-cpp-python in-process"]
    ratios = {
        "2 lanes ÷ one slot": single,
        "2 lanes ÷ in-process": in_process,
        "2 lanes ÷ 1 lane": one_lane,
    }
    for label, other in ratios.items():
        table.add_row(label, *(f"{batched[level] / other[level]:.2f}×" for level in levels))
    for label, rate in (("2 lanes: level ÷ 1 stream", batched), ("1 lane: level ÷ 1 stream", one_lane)):
        table.add_row(label, *(f"{rate[level] / rate[levels[0]]:.2f}×" for level in levels))
    Console().print(table)


if __name__ == "__main__":
    main()
