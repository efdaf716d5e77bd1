"""Several answers to one prompt (OpenAI's `n`): one backend request for all of them, against one request
per answer (what the router sends a backend that does not share the prefill, and what it sent before).

One backend, one lane of `n` slots, so both ways decode the answers side by side; the difference is the
prompt: prefilled once and copied, or once per answer. Each run gets a prompt of its own (no slot holds
any of it), and the two ways alternate, so drift in the machine's speed hits both. Figures: wall time to
the last answer's end, time to every answer's first token, prompt tokens the backend decoded (its
localmodel_backend_prompt_tokens_total), and the share of CPU other processes took while it ran.

    python -m bench.answers_throughput [--model smollm2|gemma3] [--n 4] [--prompt-words 600]
                                       [--tokens 32] [--runs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from rich.console import Console
from rich.table import Table

from bench.machine import CpuWatch, describe
from localmodel.ports import free_port
from localmodel.wire import backend_pb2, backend_pb2_grpc
from scripts.model_files import MODELS, ensure_model
from tests.support.backend_metrics import backend_metric
from tests.support.backend_process import BackendProcess

SEED = 100


def prompt(run: int, words: int) -> str:
    # A different first line per run: nothing of it is in any slot's cache.
    body = " ".join(f"The harbour log entry {i} notes calm water and a bell." for i in range(words // 10))
    return f"Report {run} of the lighthouse. {body}\nSummarise the report in one line:"


def options(text: str, tokens: int, seed: int, n: int = 0) -> backend_pb2.PredictOptions:
    return backend_pb2.PredictOptions(
        prompt=text, tokens=tokens, temperature=0.8, seed=seed, ignore_eos=True, n=n
    )


def decoded(metrics_port: int) -> float:
    return backend_metric(metrics_port, "localmodel_backend_prompt_tokens_total")


def one_request(stub: backend_pb2_grpc.BackendStub, text: str, n: int, tokens: int) -> tuple[float, float]:
    """All n answers in one request: (seconds to the last answer's end, to every answer's first token)."""
    started, first = time.perf_counter(), {}
    for reply in stub.PredictStream(options(text, tokens, SEED, n)):
        first.setdefault(reply.index, time.perf_counter() - started)
    assert len(first) == n
    return time.perf_counter() - started, max(first.values())


def request_each(stub: backend_pb2_grpc.BackendStub, text: str, n: int, tokens: int) -> tuple[float, float]:
    """A request per answer, sent at once (seed + i each, as the router does)."""
    started = time.perf_counter()

    def answer(index: int) -> float:
        replies = stub.PredictStream(options(text, tokens, SEED + index))
        next(replies)
        first = time.perf_counter() - started
        for _ in replies:
            pass
        return first

    with ThreadPoolExecutor(n) as pool:
        firsts = list(pool.map(answer, range(n)))
    return time.perf_counter() - started, max(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--prompt-words", type=int, default=600)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    machine = describe(("llama_cpp_python",))
    console.print(f"{machine['cpu_model']}, {machine['nproc']} CPUs; model {args.model}, n={args.n}")
    model, port = ensure_model(args.model), free_port()
    backend_args = ["--model", str(model), "--context-size", "4096", "--parallel", str(args.n)]
    backend_args += ["--lanes", "1", "--threads", str(args.threads), "--metrics-port", str(port)]
    ways = {"one request, n answers": one_request, "a request per answer": request_each}
    figures: dict[str, list[tuple[float, float, float]]] = {way: [] for way in ways}
    watch = CpuWatch()
    with BackendProcess(backend_args) as backend:
        backend.wait_ready()
        with grpc.insecure_channel(backend.address) as channel:
            stub = backend_pb2_grpc.BackendStub(channel)
            stub.Predict(options(prompt(-1, 50), 4, SEED))  # warm-up
            watch.mark()
            for run in range(args.runs):
                for offset, (way, measure) in enumerate(ways.items()):
                    text = prompt(2 * run + offset, args.prompt_words)
                    before = decoded(port)
                    wall, first = measure(stub, text, args.n, args.tokens)
                    figures[way].append((wall, first, decoded(port) - before))
            watch.mark()
    table = Table(title=f"{args.n} answers of {args.tokens} tokens, median of {args.runs} runs")
    for column in ("way", "wall s", "all first tokens s", "prompt tokens decoded", "answers/s"):
        table.add_column(column, justify="right")
    medians = {}
    for way, rows in figures.items():
        wall, first, tokens = (statistics.median(column) for column in zip(*rows, strict=True))
        medians[way] = wall
        table.add_row(way, f"{wall:.2f}", f"{first:.2f}", f"{tokens:.0f}", f"{args.n / wall:.2f}")
    console.print(table)
    shared, each = medians.values()
    console.print(f"one request: {each / shared:.2f}× the speed of a request per answer")
    others = watch.intervals[-1].others_share(machine["nproc"])
    console.print(f"other processes' CPU share while measuring: {others:.1%}")


if __name__ == "__main__":
    main()
