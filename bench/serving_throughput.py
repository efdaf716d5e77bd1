"""How fast, against what: our stack against llama.cpp's own `llama-server`, llama-cpp-python's server and
llama-cpp-python in-process.

Every system serves the same GGUF (SmolLM2 and Gemma-3-270M, one after the other) with the same threads,
context per slot, slots and batch size, and gets the same streamed chat requests (the prompt set of
localmodel/loadgen/prompts.py, temperature 0, fixed max_tokens, repeat penalty 1):

- localmodel: `localmodel serve -f <manifest>` (router + one gRPC backend process), the product as
  users run it on one machine.
- llama-server: llama.cpp's C++ server, the baseline that counts (KubeAI's and LocalAI's llama.cpp engines
  are, or derive from, it), built by scripts/llama_server.py from the llama.cpp the pinned llama-cpp-python
  vendors with the same build options as our backend; its defaults otherwise (prompt cache on), except
  flash attention off, as ours (its `auto` turns it on on CPUs). Our backend gives each slot the whole
  context, so llama-server gets `-c context×slots -np slots` (its slots split `-c`).
- llama_cpp.server (`--systems` adds it): `python -m llama_cpp.server` from llama-cpp-python's [server]
  extra, with `--interrupt_requests False` (by default a waiting request cuts the running stream short)
  and `--logits_all False` (by default it computes logits for every prompt token). One slot.
- in-process: `Llama.create_chat_completion(stream=True)` called in this process, no HTTP and no gRPC.
  A Llama cannot serve two requests at once, so its requests run one after another behind a lock;
  concurrent clients queue for it as they queue inside the servers, and their TTFT includes the wait.

The servers get their load from the official AsyncOpenAI client (localmodel.loadgen); every system's
chunks are tallied by the same code. Each system gets one warm-up request, not counted; then, at each
concurrency, each system in turn runs the same number of requests from that many closed-loop clients
(which system goes first rotates from level to level), so a drift in the machine's speed hits all alike.
The CPU time of everything else on the machine is read during each level: a run in which other
processes took more than 5% of it is reported as not quiet. The tables, a JSON file with every request and
a Markdown copy of the tables go to bench/results/; the plot to docs/performance-tokens-per-second.png.

    python -m bench.serving_throughput [--models smollm2 gemma3] [--concurrency 1,2,4,8,16]
        [--requests 16] [--max-tokens 128] [--systems localmodel llama-server in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import yaml
from openai.types.chat import ChatCompletionChunk
from rich.console import Console

from bench.machine import CpuShare, CpuWatch, code_state, describe
from localmodel.loadgen.bench import parse_concurrencies
from localmodel.loadgen.client import ChatTarget, CompletionTarget
from localmodel.loadgen.driver import LevelRun, System, measure
from localmodel.loadgen.prompts import PROMPTS
from localmodel.loadgen.report import as_json, markdown, notes, ratios, rich_table
from localmodel.loadgen.stats import LevelSummary, RequestResult, StreamTally
from localmodel.ports import free_port
from localmodel_llamacpp.decoder import default_slots
from localmodel_llamacpp.engine import open_llama
from scripts.llama_server import ensure_llama_server
from scripts.model_files import MODELS, ensure_model
from tests.support.local_mode import LocalMode

ROOT = Path(__file__).resolve().parents[1]
OURS, LLAMA_SERVER, SERVER, IN_PROCESS = "localmodel", "llama-server", "llama_cpp.server", "in-process"
SYSTEMS = (OURS, LLAMA_SERVER, SERVER, IN_PROCESS)  # the tables' order
BASELINES = (LLAMA_SERVER, SERVER, IN_PROCESS)
BATCH = 512  # llama.cpp's n_batch: the default of all three, written out so that it stays the same
# llama_cpp.server's default repeat penalty is 1.1; ours and Llama.create_chat_completion's are 1.
# Sent to every server (ours ignores fields it does not know), so all sample alike.
SAME_SAMPLING = {"repeat_penalty": 1.0}
# A level during which other processes (or the hypervisor) took more of the machine than this is suspect.
QUIET = 0.05
# What llama-server must be matched at: TTFT p50 at one client within this factor of its own.
TTFT_TARGET = 1.1
# Models with a chat template get chat requests; the others (Gemma-3-270M is a base model) the same
# prompts raw, as completions.
CHAT_MODELS = {"smollm2"}


class InProcess:
    """llama-cpp-python called directly: one generation at a time, on a worker thread."""

    def __init__(self, model: Path, threads: int, context: int, max_tokens: int, chat: bool) -> None:
        self._llama = open_llama(  # repack decided as the backend decides it
            model_path=str(model),
            n_ctx=context,
            n_batch=BATCH,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self._max_tokens = max_tokens
        self._chat = chat
        self._lock = asyncio.Lock()

    async def send(self, prompt: str) -> RequestResult:
        started = time.perf_counter()  # before the queue: a waiting client's TTFT includes its wait
        async with self._lock:
            return await asyncio.to_thread(self._generate, prompt, started)

    def _generate(self, prompt: str, started: float) -> RequestResult:
        tally = StreamTally(started=started)
        penalty = SAME_SAMPLING["repeat_penalty"]
        if self._chat:
            messages: list[Any] = [{"role": "user", "content": prompt}]
            chats = self._llama.create_chat_completion(
                messages, temperature=0.0, max_tokens=self._max_tokens, repeat_penalty=penalty, stream=True
            )
            for chat in chats:
                tally.feed(ChatCompletionChunk.model_validate(chat), time.perf_counter())
        else:
            texts = self._llama.create_completion(
                prompt, temperature=0.0, max_tokens=self._max_tokens, repeat_penalty=penalty, stream=True
            )
            # Streamed, these are chunks (dicts); their finish_reason None is not OpenAI's Completion model.
            for piece in cast(Iterator[dict[str, Any]], texts):
                if text := piece["choices"][0]["text"]:
                    tally.content(text, time.perf_counter())
        return tally.result(time.perf_counter())


def write_manifest(
    folder: Path, name: str, model: Path, threads: int, context: int, slots: int, prompt_cache: str | None
) -> Path:
    engine: dict[str, Any] = {"contextSize": context, "threads": threads, "parallel": slots}
    if prompt_cache:
        engine["options"] = [f"prompt_cache:{prompt_cache}"]
    manifest = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"url": model.as_uri()},
            "tasks": ["chat" if name in CHAT_MODELS else "completion"],
            "backend": {"engine": engine},
            "replicas": 1,
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def llama_server_command(
    binary: Path, name: str, model: Path, threads: int, context: int, slots: int
) -> list[str]:
    """llama-server as configured like our backend: every slot with `context` tokens of its own."""
    return [
        str(binary), "--model", str(model), "--alias", name, "--host", "127.0.0.1",
        "--ctx-size", str(context * slots), "--parallel", str(slots), "--batch-size", str(BATCH),
        "--threads", str(threads), "--threads-batch", str(threads), "--no-ui",
        "--flash-attn", "off",  # its default, auto, turns it on here; our backend's default is off
    ]  # fmt: skip


def llama_cpp_server_command(name: str, model: Path, threads: int, context: int) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", name,
        "--host", "127.0.0.1", "--n_ctx", str(context), "--n_batch", str(BATCH),
        "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--interrupt_requests", "False", "--logits_all", "False",
    ]  # fmt: skip


@contextmanager
def serving(title: str, command: list[str], log: Path) -> Iterator[str]:
    """An OpenAI-compatible server (`command --port <a free port>`) until the block ends; yields its
    base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 120
            while not _answers(f"{url}/models"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{title} did not start; its log:\n{log.read_text()[-4000:]}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _sdk_http() -> Any:
    """The HTTP library the openai SDK's default client is built on (httpx or httpx2, by release)."""
    return importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0])


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
    """The targets: ours ≥ each baseline's aggregate tokens/s at every level, TTFT at one client within
    TTFT_TARGET of llama-server's, and ours growing with concurrency."""
    ours = {s.concurrency: s for s in summaries if s.system == OURS}
    present = {s.system for s in summaries}
    lines = []
    for baseline in (b for b in BASELINES if b in present and b != IN_PROCESS):
        against = ratios(summaries, baseline)
        found = [against.get((OURS, c)) for c in ours]
        beaten = all(r is not None and r >= 1.0 for r in found)
        listed = ", ".join(
            f"{c}: {r:.2f}×" if r is not None else f"{c}: —" for c, r in zip(ours, found, strict=True)
        )
        lines.append(
            f"localmodel ≥ {baseline} at every concurrency: {'met' if beaten else 'NOT met'} ({listed})"
        )
    theirs = next((s for s in summaries if s.system == LLAMA_SERVER and s.concurrency == 1), None)
    if 1 in ours and theirs is not None and ours[1].ttft_p50 and theirs.ttft_p50:
        factor = ours[1].ttft_p50 / theirs.ttft_p50
        verdict = "met" if factor <= TTFT_TARGET else "NOT met"
        lines.append(
            f"TTFT p50 at 1 client ≤ {TTFT_TARGET}× llama-server's: {verdict} "
            f"({ours[1].ttft_p50 * 1000:.0f} ms against {theirs.ttft_p50 * 1000:.0f} ms, {factor:.2f}×)"
        )
    if IN_PROCESS in present and 1 in ours:
        single = ratios(summaries, IN_PROCESS).get((OURS, 1))
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


def plot(per_model: Mapping[str, Sequence[LevelSummary]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, all_axes = plt.subplots(
        1, len(per_model), figsize=(6 * len(per_model), 4.4), dpi=120, squeeze=False
    )
    for axes, (model, summaries) in zip(all_axes[0], per_model.items(), strict=True):
        levels = sorted({s.concurrency for s in summaries})
        for system, marker in zip(SYSTEMS, "osD^", strict=True):
            points = sorted((s.concurrency, s.tokens_per_second) for s in summaries if s.system == system)
            if points:
                axes.plot(*zip(*points, strict=True), marker=marker, label=system)
        axes.set_xscale("log", base=2)
        axes.set_xticks(levels, [str(level) for level in levels])
        axes.set_ylim(bottom=0)
        axes.set_xlabel("concurrent streams (clients)")
        axes.set_ylabel("aggregate generated tokens/s")
        axes.set_title(MODELS[model].file_name, fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


async def run_model(
    name: str, slots: int, args: argparse.Namespace, console: Console, folder: Path
) -> tuple[list[LevelRun], list[CpuShare]]:
    """One model's levels on every system, and the CPU used on the machine during each level (ours and
    everything else's)."""
    model = ensure_model(name)
    wanted = set(args.systems)
    with ExitStack() as stack:
        console.print(f"{name}: starting {', '.join(args.systems)} ({slots} slots)", style="dim")
        systems: list[System] = []
        clients: list[openai.AsyncOpenAI] = []

        def target(url: str) -> ChatTarget:
            # llama-server closes a connection idle for 5 s; one the pool took up just then fails (no
            # retries here: they would hide failures). Idle connections are dropped sooner, for every system.
            http = openai.DefaultAsyncHttpxClient(limits=_sdk_http().Limits(keepalive_expiry=2.0))
            clients.append(
                openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600, http_client=http)
            )
            kind = ChatTarget if name in CHAT_MODELS else CompletionTarget
            return kind(clients[-1], name, args.max_tokens, extra_body=SAME_SAMPLING)

        if OURS in wanted:
            manifest = write_manifest(
                folder, name, model, args.threads, args.context, slots, args.prompt_cache
            )
            served = LocalMode(["serve", "-f", str(manifest)], folder / "cache", folder / f"{name}-serve.log")
            stack.enter_context(served)
            systems.append(
                System(OURS, target(f"{served.url}/v1").send, "localmodel serve: router + 1 backend")
            )
        if LLAMA_SERVER in wanted:
            command = llama_server_command(
                ensure_llama_server(lambda line: console.print(line, style="dim")),
                name, model, args.threads, args.context, slots,
            )  # fmt: skip
            url = stack.enter_context(serving(LLAMA_SERVER, command, folder / f"{name}-llama-server.log"))
            systems.append(System(LLAMA_SERVER, target(url).send, "llama.cpp's llama-server"))
        if SERVER in wanted:
            command = llama_cpp_server_command(name, model, args.threads, args.context)
            url = stack.enter_context(serving(SERVER, command, folder / f"{name}-llama_cpp_server.log"))
            systems.append(System(SERVER, target(url).send, "python -m llama_cpp.server"))
        if IN_PROCESS in wanted:
            in_process = InProcess(model, args.threads, args.context, args.max_tokens, name in CHAT_MODELS)
            note = f"Llama.create_{'chat_' if name in CHAT_MODELS else ''}completion, one at a time"
            systems.append(System(IN_PROCESS, in_process.send, note))
        watch = CpuWatch()

        def progress(line: str) -> None:
            watch.mark()  # a level begins: the interval before it (warm-up or the previous level) ends
            console.print(f"{name}: {line}", style="dim")

        try:
            runs = await measure(systems, PROMPTS, args.concurrency, args.requests, progress=progress)
            watch.mark()
            return runs, watch.intervals[1:]  # the first interval is the warm-up
        finally:
            for client in clients:
                await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3"], choices=sorted(MODELS))
    parser.add_argument("--concurrency", type=parse_concurrencies, default=(1, 2, 4, 8, 16))
    parser.add_argument("--requests", type=int, default=16, help="requests per system per level")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads (all)")
    parser.add_argument("--context", type=int, default=2048, help="context size per slot, all systems")
    parser.add_argument("--parallel", type=int, help="slots of localmodel and llama-server (default: ours)")
    parser.add_argument(
        "--systems", nargs="+", default=[OURS, LLAMA_SERVER, IN_PROCESS], choices=SYSTEMS, help="what to run"
    )
    parser.add_argument(
        "--prompt-cache",
        choices=["exact", "prefix"],
        help="localmodel's prompt cache (default: the backend's)",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs and the manifests in this folder")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "performance-tokens-per-second.png")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 200))  # the tables are wide
    # Started in the background by a shell, a process inherits SIGINT ignored; Ctrl-C / kill -INT must
    # still stop the run with every server it started shut down.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    started = datetime.now(UTC)
    machine = describe(("llama_cpp_python", "openai", "grpcio"))
    slots = args.parallel or default_slots(args.context)
    common = (
        f"{args.threads} threads, context {args.context} per slot, {slots} slots, "
        f"max_tokens {args.max_tokens}, temperature 0, {args.requests} requests per level; "
        f"{machine['nproc']} CPUs ({machine['cpu_model']})"
    )
    per_model: dict[str, list[LevelSummary]] = {}
    levels, findings, markdown_parts = [], [], []
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) if args.logs is None else args.logs
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            runs, cpu = asyncio.run(run_model(name, slots, args, console, folder))
            summaries = sorted(
                (run.summary for run in runs), key=lambda s: (s.concurrency, SYSTEMS.index(s.system))
            )
            per_model[name] = summaries
            baselines = [b for b in BASELINES if b in args.systems]
            answers = same_answers(runs) if IN_PROCESS in args.systems else {}
            found = [
                *notes(summaries),
                *(
                    ["answers equal to in-process's for the same prompt: "
                     + ", ".join(f"{system} {same}/{total}" for system, (same, total) in answers.items())]
                    if answers else []
                ),
                *verdicts(summaries),
                quiet_verdict(runs, cpu, machine["nproc"]),
            ]  # fmt: skip
            title = f"{MODELS[name].file_name}, {common}"
            console.print(rich_table(summaries, baselines, title))
            for line in found:
                console.print(line)
            findings += [f"{name}: {line}" for line in found]
            bullets = "".join(f"- {line}\n" for line in found)
            markdown_parts.append(f"{title}\n\n{markdown(summaries, baselines)}\n{bullets}")
            levels.append(
                {
                    "model": MODELS[name].file_name,
                    **as_json(runs, {}),
                    "cpu_per_level": [
                        {"system": run.summary.system, "concurrency": run.summary.concurrency}
                        | dataclasses.asdict(share)
                        for run, share in zip(runs, cpu, strict=True)
                    ],
                }
            )

    stamp = started.strftime("%Y%m%d-%H%M%S")
    args.results.mkdir(parents=True, exist_ok=True)
    context = {
        "benchmark": "bench.serving_throughput",
        "started": started.isoformat(timespec="seconds"),
        "machine": machine,
        "code": code_state(ROOT),
        "models": [MODELS[name].file_name for name in args.models],
        "systems": args.systems,
        "threads": args.threads,
        "context_per_slot": args.context,
        "slots": slots,
        "batch": BATCH,
        "max_tokens": args.max_tokens,
        "temperature": 0.0,
        "requests_per_level": args.requests,
        "prompts": list(PROMPTS),
        "localmodel_prompt_cache": args.prompt_cache or "backend default",
        "findings": findings,
    }
    json_path = args.results / f"serving-throughput-{stamp}.json"
    json_path.write_text(json.dumps({"context": context, "models": levels}, indent=2) + "\n")
    md_path = args.results / f"serving-throughput-{stamp}.md"
    md_path.write_text("\n".join(markdown_parts))
    plot(per_model, args.plot, common)
    console.print(f"results: {json_path}, {md_path}; plot: {args.plot}")


if __name__ == "__main__":
    main()
