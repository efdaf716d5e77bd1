"""How fast, against what: our stack against llama-cpp-python's own server and llama-cpp-python in-process.

Three systems serve the same SmolLM2 GGUF with the same threads, context and batch size, and get the
same streamed chat requests (the prompt set of localmodel/loadgen/prompts.py, temperature 0, fixed
max_tokens, repeat penalty 1):

- localmodel: `localmodel serve -f <manifest>` (router + one gRPC backend process), the product as
  users run it on one machine.
- llama_cpp.server: `python -m llama_cpp.server` from llama-cpp-python's [server] extra, with
  `--interrupt_requests False` (by default a waiting request cuts the running stream short, so the
  streams would not do the same work) and `--logits_all False` (by default it computes logits for every
  prompt token, work the others skip).
- in-process: `Llama.create_chat_completion(stream=True)` called in this process, no HTTP and no gRPC.
  A Llama cannot serve two requests at once, so its requests run one after another behind a lock;
  concurrent clients queue for it as they queue inside the two servers, and their TTFT includes the wait.

The two servers get their load from the official AsyncOpenAI client (localmodel.loadgen); every system's
chunks are tallied by the same code. Each system gets one warm-up request, not counted; then, at each
concurrency, each system in turn runs the same number of requests from that many closed-loop clients
(which system goes first rotates from level to level), so a drift in the machine's speed hits all three
alike. The CPU time of everything else on the machine is read during each level: a run in which other
processes took more than 5% of it is reported as not quiet. The table, a JSON file with every request and a
Markdown copy of the table go to bench/results/; the plot to docs/performance-tokens-per-second.png.

    python -m bench.serving_throughput [--concurrency 1,2,4,8] [--requests 16] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import yaml
from openai.types.chat import ChatCompletionChunk
from rich.console import Console

from bench.machine import CpuShare, CpuWatch, code_state, describe
from localmodel.loadgen.client import ChatTarget
from localmodel.loadgen.command import parse_concurrencies
from localmodel.loadgen.driver import LevelRun, System, measure
from localmodel.loadgen.prompts import PROMPTS
from localmodel.loadgen.report import as_json, markdown, notes, ratios, rich_table
from localmodel.loadgen.stats import LevelSummary, RequestResult, StreamTally
from localmodel_llamacpp.engine import open_llama
from localmodel_llamacpp.process import free_port
from scripts.test_models import ensure_model
from tests.support.local_mode import LocalMode

ROOT = Path(__file__).resolve().parents[1]
OURS, SERVER, IN_PROCESS = "localmodel", "llama_cpp.server", "in-process"
MODEL_NAME = "smollm2"
BATCH = 512  # llama.cpp's n_batch: the default of all three, written out so that it stays the same
# llama_cpp.server's default repeat penalty is 1.1; ours and Llama.create_chat_completion's are 1.
# Sent to both servers (ours ignores fields it does not know), so all three sample alike.
SAME_SAMPLING = {"repeat_penalty": 1.0}
# A level during which other processes (or the hypervisor) took more of the machine than this is suspect.
QUIET = 0.05


class InProcess:
    """llama-cpp-python called directly: one generation at a time, on a worker thread."""

    def __init__(self, model: Path, threads: int, context: int, max_tokens: int) -> None:
        self._llama = open_llama(  # repack decided as the backend decides it
            model_path=str(model),
            n_ctx=context,
            n_batch=BATCH,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self._max_tokens = max_tokens
        self._lock = asyncio.Lock()

    async def send(self, prompt: str) -> RequestResult:
        started = time.perf_counter()  # before the queue: a waiting client's TTFT includes its wait
        async with self._lock:
            return await asyncio.to_thread(self._generate, prompt, started)

    def _generate(self, prompt: str, started: float) -> RequestResult:
        tally = StreamTally(started=started)
        stream = self._llama.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            temperature=0.0,
            max_tokens=self._max_tokens,
            repeat_penalty=SAME_SAMPLING["repeat_penalty"],
            stream=True,
        )
        for chunk in stream:
            tally.feed(ChatCompletionChunk.model_validate(chunk), time.perf_counter())
        return tally.result(time.perf_counter())


def write_manifest(folder: Path, model: Path, threads: int, context: int, parallel: int | None) -> Path:
    engine: dict[str, int] = {"contextSize": context, "threads": threads}
    if parallel is not None:  # else the backend's own choice of slots, as users get it
        engine["parallel"] = parallel
    manifest = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": MODEL_NAME},
        "spec": {
            "model": {"url": model.as_uri()},
            "tasks": ["chat"],
            "backend": {"engine": engine},
            "replicas": 1,
        },
    }
    path = folder / "smollm2.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


@contextmanager
def llama_cpp_server(model: Path, threads: int, context: int, log: Path) -> Iterator[str]:
    """`python -m llama_cpp.server` on a free port until the block ends; yields its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(context), "--n_batch", str(BATCH),
        "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--interrupt_requests", "False", "--logits_all", "False",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not _answers(f"{url}/models"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start; its log:\n{log.read_text()[-4000:]}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def same_answers(runs: Sequence[LevelRun]) -> dict[str, tuple[int, int]]:
    """Per system: (requests whose text equals in-process's answer to the same prompt, requests)."""
    reference = {r.prompt: r.text for run in runs if run.summary.system == IN_PROCESS for r in run.results}
    counts: dict[str, tuple[int, int]] = {}
    for run in runs:
        same, total = counts.get(run.summary.system, (0, 0))
        ok = [r for r in run.results if r.ok]
        same += sum(1 for r in ok if reference.get(r.prompt) == r.text)
        counts[run.summary.system] = (same, total + len(ok))
    return counts


def verdicts(summaries: Sequence[LevelSummary]) -> list[str]:
    against_server, against_in_process = ratios(summaries, SERVER), ratios(summaries, IN_PROCESS)
    ours = {s.concurrency: s for s in summaries if s.system == OURS}
    lines = []
    server_ratios = [against_server.get((OURS, c)) for c in ours]
    beaten = all(r is not None and r >= 1.0 for r in server_ratios)
    listed = ", ".join(
        f"{c}: {r:.2f}×" if r is not None else f"{c}: —" for c, r in zip(ours, server_ratios, strict=True)
    )
    verdict = "met" if beaten else "NOT met"
    lines.append(f"localmodel ≥ llama_cpp.server at every concurrency: {verdict} ({listed})")
    if 1 in ours:
        single = against_in_process.get((OURS, 1))
        met = single is not None and single >= 0.97
        shown = f"{single:.3f}×" if single is not None else "—"
        lines.append(f"localmodel ≥ 0.97 × in-process at 1 client: {'met' if met else 'NOT met'} ({shown})")
    if len(ours) > 1:
        low, high = min(ours), max(ours)
        growth = ours[high].tokens_per_second / max(ours[low].tokens_per_second, 1e-9)
        verdict = "grows" if growth >= 1.1 else "does NOT grow"
        lines.append(
            f"localmodel aggregate tokens/s with {high} clients over {low}: {growth:.2f}× "
            f"(DESIGN.md: must grow with concurrency): {verdict}"
        )
    return lines


def quiet_verdict(runs: Sequence[LevelRun], cpu: Sequence[CpuShare], cpus: int) -> str:
    """Whether anything else took a noticeable share of the machine during any level."""
    shares = [share.others_share(cpus) for share in cpu]
    worst = max(range(len(shares)), key=shares.__getitem__)
    where = f"{runs[worst].summary.system}, {runs[worst].summary.concurrency} clients"
    verdict = (
        "a quiet run" if shares[worst] <= QUIET else f"NOT a quiet run (above {QUIET:.0%}): measure again"
    )
    most = f"at most {shares[worst]:.1%} of the machine in a level ({where})"
    return f"other processes and CPU steal: {most}: {verdict}"


def plot(summaries: Sequence[LevelSummary], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    levels = sorted({s.concurrency for s in summaries})
    for system, marker in ((OURS, "o"), (SERVER, "s"), (IN_PROCESS, "^")):
        points = sorted((s.concurrency, s.tokens_per_second) for s in summaries if s.system == system)
        if points:
            axes.plot(*zip(*points, strict=True), marker=marker, label=system)
    axes.set_xscale("log", base=2)
    axes.set_xticks(levels, [str(level) for level in levels])
    axes.set_ylim(bottom=0)
    axes.set_xlabel("concurrent streams (clients)")
    axes.set_ylabel("aggregate generated tokens/s")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


async def run_all(
    args: argparse.Namespace, console: Console, folder: Path
) -> tuple[list[LevelRun], list[CpuShare]]:
    """Every level's figures, and the CPU used on the machine during each (ours and everything else's)."""
    model = ensure_model("smollm2")
    with ExitStack() as stack:
        console.print("starting localmodel serve, llama_cpp.server and an in-process Llama", style="dim")
        manifest = write_manifest(folder, model, args.threads, args.context, args.parallel)
        served = LocalMode(["serve", "-f", str(manifest)], folder / "cache", folder / "serve.log")
        stack.enter_context(served)
        server = llama_cpp_server(model, args.threads, args.context, folder / "llama_cpp_server.log")
        server_url = stack.enter_context(server)
        in_process = InProcess(model, args.threads, args.context, args.max_tokens)
        clients = [
            openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
            for url in (f"{served.url}/v1", server_url)
        ]
        ours, theirs = (
            ChatTarget(client, MODEL_NAME, args.max_tokens, extra_body=SAME_SAMPLING) for client in clients
        )
        systems = [
            System(OURS, ours.send, "localmodel serve: router + 1 gRPC backend process"),
            System(SERVER, theirs.send, "python -m llama_cpp.server"),
            System(IN_PROCESS, in_process.send, "Llama.create_chat_completion, one request at a time"),
        ]
        watch = CpuWatch()

        def progress(line: str) -> None:
            watch.mark()  # a level begins: the interval before it (warm-up or the previous level) ends
            console.print(line, style="dim")

        try:
            runs = await measure(systems, PROMPTS, args.concurrency, args.requests, progress=progress)
            watch.mark()
            return runs, watch.intervals[1:]  # the first interval is the warm-up
        finally:
            for client in clients:
                await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=parse_concurrencies, default=(1, 2, 4, 8))
    parser.add_argument("--requests", type=int, default=16, help="requests per system per level")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads (all)")
    parser.add_argument("--context", type=int, default=2048, help="context size, all three")
    parser.add_argument("--parallel", type=int, help="localmodel's batching slots (default: the backend's)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs and the manifest in this folder")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "performance-tokens-per-second.png")
    args = parser.parse_args()
    console = Console()
    # Started in the background by a shell, a process inherits SIGINT ignored; Ctrl-C / kill -INT must
    # still stop the run with every server it started shut down.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) if args.logs is None else args.logs
        folder.mkdir(parents=True, exist_ok=True)
        runs, cpu = asyncio.run(run_all(args, console, folder))
    order = [OURS, SERVER, IN_PROCESS]  # the table's order; the runs rotated which system went first
    summaries = sorted((run.summary for run in runs), key=lambda s: (s.concurrency, order.index(s.system)))
    machine = describe(("llama_cpp_python", "openai", "grpcio"))
    title = (
        f"SmolLM2-135M-Instruct Q4_1, {args.threads} threads, max_tokens {args.max_tokens}, temperature 0, "
        f"{args.requests} requests per level; {machine['nproc']} CPUs ({machine['cpu_model']})"
    )
    baselines = [SERVER, IN_PROCESS]
    answers = same_answers(runs)
    findings = [
        *notes(summaries),
        "answers equal to in-process's for the same prompt: "
        + ", ".join(f"{system} {same}/{total}" for system, (same, total) in answers.items()),
        *verdicts(summaries),
        quiet_verdict(runs, cpu, machine["nproc"]),
    ]
    console.print(rich_table(summaries, baselines, title))
    for line in findings:
        console.print(line)

    stamp = started.strftime("%Y%m%d-%H%M%S")
    args.results.mkdir(parents=True, exist_ok=True)
    context = {
        "benchmark": "bench.serving_throughput",
        "started": started.isoformat(timespec="seconds"),
        "machine": machine,
        "code": code_state(ROOT),
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "threads": args.threads,
        "context": args.context,
        "batch": BATCH,
        "localmodel_parallel": args.parallel if args.parallel is not None else "backend default",
        "max_tokens": args.max_tokens,
        "temperature": 0.0,
        "requests_per_level": args.requests,
        "prompts": list(PROMPTS),
        "findings": findings,
        "cpu_per_level": [
            {
                "system": run.summary.system,
                "concurrency": run.summary.concurrency,
                **dataclasses.asdict(share),
            }
            for run, share in zip(runs, cpu, strict=True)
        ],
    }
    json_path = args.results / f"serving-throughput-{stamp}.json"
    json_path.write_text(json.dumps(as_json(runs, context), indent=2) + "\n")
    md_path = args.results / f"serving-throughput-{stamp}.md"
    bullets = "".join(f"- {line}\n" for line in findings)
    md_path.write_text(f"{title}\n\n{markdown(summaries, baselines)}\n{bullets}")
    plot(summaries, args.plot, title.replace("; ", "\n"))
    console.print(f"results: {json_path}, {md_path}; plot: {args.plot}")


if __name__ == "__main__":
    main()
