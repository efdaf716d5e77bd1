"""Tokens/s of one stream through the gRPC backend against llama-cpp-python called in-process.

Same model, threads, prompt, sampling and token count on both sides; runs alternate so that drift in
the machine's speed hits both equally; the median of each side is compared.

    python -m bench.backend_throughput [--tokens 256] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import grpc
import llama_cpp
from rich.console import Console
from rich.table import Table

from localmodel.wire import backend_pb2, backend_pb2_grpc
from localmodel_llamacpp.engine import open_llama
from scripts.model_files import ensure_model
from tests.support.backend_process import BackendProcess

# End-of-text is ignored on both sides, so every run makes exactly --tokens tokens.
PROMPT = "Count from one to one thousand in words: one, two, three, four, five,"
CONTEXT = 2048


def in_process_run(llama: llama_cpp.Llama, tokens: int) -> tuple[int, float, float]:
    """(tokens, seconds in all, seconds after the first token) for one generation, the leanest way:
    llama-cpp-python's own token generator, detokenising each token as a streaming server must."""
    started = time.perf_counter()
    llama.reset()  # evaluate the whole prompt, as the backend does for every request
    prompt = llama.tokenize(PROMPT.encode())
    first = None
    count = 0
    for token in llama.generate(prompt, top_k=0, top_p=1.0, min_p=0.0, temp=0.0):
        first = first or time.perf_counter()
        llama.detokenize([token])
        count += 1
        if count == tokens:
            break
    end = time.perf_counter()
    return count, end - started, end - (first or end)


def grpc_run(stub: backend_pb2_grpc.BackendStub, tokens: int) -> tuple[int, float, float]:
    request = backend_pb2.PredictOptions(prompt=PROMPT, tokens=tokens, temperature=0, ignore_eos=True)
    started = time.perf_counter()
    first = None
    last = None
    for reply in stub.PredictStream(request):
        first = first or time.perf_counter()
        last = reply
    end = time.perf_counter()
    assert last is not None
    return last.tokens, end - started, end - (first or end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    model = ensure_model("smollm2")

    threads = {"n_threads": args.threads, "n_threads_batch": args.threads}
    llama = open_llama(model_path=str(model), n_ctx=CONTEXT, verbose=False, **threads)
    backend_args = ["--model", str(model), "--context-size", str(CONTEXT), "--threads", str(args.threads)]
    results: dict[str, list[tuple[int, float, float]]] = {"in-process": [], "gRPC backend": []}
    with BackendProcess([*backend_args, "--log-level", "WARNING"]) as backend:
        backend.wait_ready()
        with grpc.insecure_channel(backend.address) as channel:
            stub = backend_pb2_grpc.BackendStub(channel)
            grpc_run(stub, 16), in_process_run(llama, 16)  # warm both up
            for round_ in range(args.rounds):
                results["gRPC backend"].append(grpc_run(stub, args.tokens))
                results["in-process"].append(in_process_run(llama, args.tokens))
                console.print(f"round {round_ + 1}/{args.rounds} done", style="dim")

    title = f"SmolLM2-135M Q4_1, {args.threads} threads, {args.tokens} tokens, median of {args.rounds}"
    table = Table(title=title)
    for column in ("path", "tokens", "tokens/s (end to end)", "tokens/s (after first token)"):
        table.add_column(column, justify="right")
    rates = {}
    for name, runs in results.items():
        tokens = args.tokens
        counts = [run[0] for run in runs]
        assert counts == [args.tokens] * len(runs), f"{name} generated {counts} tokens"
        end_to_end = statistics.median(tokens / total for _, total, _ in runs)
        decode = statistics.median((tokens - 1) / after for _, _, after in runs)
        rates[name] = (end_to_end, decode)
        table.add_row(name, str(tokens), f"{end_to_end:.1f}", f"{decode:.1f}")
    console.print(table)
    ratio = rates["gRPC backend"][0] / rates["in-process"][0]
    ratio_decode = rates["gRPC backend"][1] / rates["in-process"][1]
    console.print(
        f"ratio gRPC / in-process: {ratio:.3f} end to end, "
        f"{ratio_decode:.3f} after the first token (target >= 0.97)"
    )


if __name__ == "__main__":
    main()
