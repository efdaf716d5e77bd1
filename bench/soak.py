"""Soak: streaming clients for a bounded time while a backend replica is SIGKILLed every few seconds.

`localmodel serve` runs SmolLM2 with 2 replicas, one llama.cpp thread each (two backends of 2 threads on
a 2-core machine stall each other). N closed-loop clients send streamed chat requests through the
official AsyncOpenAI client (no SDK retries: the router is the one that retries), each waiting
`--pause-after-failure` seconds after a failed request. Every `--kill-every` seconds the backend process
of one replica slot gets SIGKILL, the two slots in turn; local mode's supervisor restarts it after its
crash backoff. A slot whose process is not running then (it waits out
its backoff) is skipped. The backoff resets only after a process ran 60 s, so at a kill every 10 s it
climbs to 30 s and both slots are down at times: requests are then held. Each request ends as one of:

- completed: a finish_reason (stop or length) arrived;
- error event: the stream ended with an SSE error event (the SDK raises a plain APIError);
- HTTP error: an error status before the stream started (APIStatusError);
- hung: no byte for `--hang-after` seconds (the router's keepalive comments count: they are bytes);
  the request is then dropped;
- other: anything else (a dropped connection, a stream ending without finish_reason): a bug.

RSS (VmRSS) of the router (the local-mode process) and of each replica slot's backend is read after a
warm-up at the start, and at the end once every slot's latest backend is ready and warmed up the same
way (a restarted backend is a new process: the figures are per slot). Restart times come from local
mode's log, the router's retry and in-flight counters from its /metrics.

    python -m bench.soak [--clients 4] [--duration 120] [--kill-every 10] [--log soak.log]

Longer than the ~400 lines a module should stay under: a benchmark here is one module run by hand, and
its parts (the byte-clocked client, the reading of the supervisor's log and of /proc, the tables) serve
this soak only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml
from openai.types.chat import ChatCompletionUserMessageParam
from rich.console import Console
from rich.table import Table

from bench.machine import CpuWatch, describe
from localmodel.loadgen.prompts import PROMPTS
from scripts.model_files import ensure_model
from tests.support.local_mode import LocalMode
from tests.support.processes import backends_of, is_running

MODEL = "smollm2"
SLOTS = (f"{MODEL}/1", f"{MODEL}/2")  # the supervisors' labels: a slot keeps its label across restarts
COMPLETED, ERROR_EVENT, HTTP_ERROR, HUNG, OTHER = "completed", "error event", "HTTP error", "hung", "other"
OUTCOMES = (COMPLETED, ERROR_EVENT, HTTP_ERROR, HUNG, OTHER)
# CPU time of processes that died cannot be read any more, so other processes' share of the machine is
# read before local mode starts, not during the soak.
QUIET_CHECK = 3.0
FLAT = 1.10  # RSS counts as flat when the end figure is at most this many times the start figure
# The supervisor's log lines (localmodel/local/supervisor.py) that say what a slot's process does.
STARTED, READY, RESTARTING, EXITED = "started", "ready", "restarting", "exited"
_LINES = {
    STARTED: re.compile(r"^(?P<slot>\S+): started process (?P<value>\d+) on "),
    READY: re.compile(r"^(?P<slot>\S+): ready on "),
    RESTARTING: re.compile(r"^(?P<slot>\S+): restarting in (?P<value>\d+)s"),
    EXITED: re.compile(
        r"^(?P<slot>\S+): process (?P<value>\d+) (?P<how>(?:was killed by|exited with code) [^.]*)"
    ),
}
ROUTER_GAUGES = ("in_flight_requests", "held_requests", "waiting_requests")
ROUTER_COUNTERS = ("retries_total", "backends_lost_during_request_total", "backend_errors_total")


def _sdk_http() -> Any:
    """The HTTP library the openai SDK's default client is built on (httpx or httpx2, by release)."""
    return importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0])


_HTTP = _sdk_http()
_ByteStream: Any = _HTTP.AsyncByteStream  # the SDK's client checks that a body stream is one
_Transport: Any = _HTTP.AsyncBaseTransport


@dataclass
class ByteClock:
    """When the current response's last byte arrived (time.monotonic), and its longest silence."""

    last: float = 0.0
    longest: float = 0.0

    def reset(self) -> None:
        self.last, self.longest = time.monotonic(), 0.0

    def tick(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self.last)
        self.last = now


class _TimedStream(_ByteStream):  # type: ignore[misc]
    def __init__(self, inner: Any, clock: ByteClock) -> None:
        self._inner = inner
        self._clock = clock

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            self._clock.tick()
            yield part

    async def aclose(self) -> None:
        await self._inner.aclose()


class TimedTransport(_Transport):  # type: ignore[misc]
    """The SDK's usual transport, ticking `clock` at each response's headers and every part of its body:
    the SDK yields chunks only, and a held stream's keepalive comments are bytes but no chunk."""

    def __init__(self, clock: ByteClock) -> None:
        self._inner = _HTTP.AsyncHTTPTransport()
        self._clock = clock

    async def handle_async_request(self, request: Any) -> Any:
        response = await self._inner.handle_async_request(request)
        self._clock.tick()
        response.stream = _TimedStream(response.stream, self._clock)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True)
class Outcome:
    kind: str
    detail: str  # the finish_reason, or what went wrong
    longest_silence: float  # the longest time without a byte, seconds


class SoakClient:
    """One closed-loop client: its own connection pool and byte clock, one request at a time."""

    def __init__(self, url: str, max_tokens: int, hang_after: float) -> None:
        self.clock = ByteClock()
        http = openai.DefaultAsyncHttpxClient(transport=TimedTransport(self.clock))
        # The hang watchdog below ends requests long before this timeout would.
        self.client = openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600, http_client=http
        )
        self.max_tokens = max_tokens
        self.hang_after = hang_after

    async def request(self, prompt: str) -> Outcome:
        """One streamed chat request, dropped as hung once no byte came for `hang_after` seconds."""
        self.clock.reset()
        task = asyncio.create_task(self._stream(prompt))
        while not (await asyncio.wait({task}, timeout=0.25))[0]:
            if time.monotonic() - self.clock.last > self.hang_after:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                kind, detail = HUNG, f"no byte for {self.hang_after:.0f}s"
                break
        else:
            try:
                kind, detail = task.result()
            except Exception as error:
                kind, detail = classify(error)
        self.clock.tick()
        return Outcome(kind, detail, self.clock.longest)

    async def _stream(self, prompt: str) -> tuple[str, str]:
        messages: list[ChatCompletionUserMessageParam] = [{"role": "user", "content": prompt}]
        stream = await self.client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=self.max_tokens, temperature=0, stream=True
        )
        finish: str | None = None
        async with stream:
            async for chunk in stream:
                finish = next((c.finish_reason for c in chunk.choices if c.finish_reason), finish)
        if finish in ("stop", "length"):
            return COMPLETED, finish
        return OTHER, f"the stream ended without finish_reason stop or length ({finish})"

    async def run(self, index: int, until: float, pause: float, outcomes: list[Outcome]) -> None:
        """Requests back to back until `until` (time.monotonic), `pause` seconds after a failed one (an
        immediate refusal would otherwise be repeated hundreds of times a second); the one running at
        `until` is finished."""
        turn = index
        while time.monotonic() < until:
            outcome = await self.request(PROMPTS[turn % len(PROMPTS)])
            outcomes.append(outcome)
            turn += 1
            if outcome.kind != COMPLETED:
                await asyncio.sleep(pause)

    async def close(self) -> None:
        await self.client.close()


def classify(error: BaseException) -> tuple[str, str]:
    # APIStatusError and APIConnectionError are APIErrors too; the SDK raises APIError itself only for
    # an error event in a stream.
    if isinstance(error, openai.APIStatusError):
        body = error.body
        message = body.get("message") if isinstance(body, dict) else None
        return HTTP_ERROR, f"HTTP {error.status_code}: {message or error.message}"
    if type(error) is openai.APIError:
        return ERROR_EVENT, error.message
    return OTHER, f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class LogEvent:
    at: float  # seconds since the epoch
    slot: str
    kind: str  # STARTED, EXITED (value: the pid), READY, RESTARTING (value: the delay in seconds)
    value: int = 0
    how: str = ""  # EXITED: how it ended ("was killed by SIGKILL", "exited with code 1")


def log_events(path: Path) -> list[LogEvent]:
    """The supervisor's lines of local mode's log (JSON lines: its stderr is a file), oldest first."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line the backend's native code wrote, or one being written
            continue
        if not isinstance(entry, dict) or entry.get("logger") != "localmodel.local.supervisor":
            continue
        for kind, pattern in _LINES.items():
            if found := pattern.match(entry.get("message", "")):
                at = datetime.fromisoformat(entry["time"]).timestamp()
                value = int(found.group("value")) if "value" in pattern.groupindex else 0
                how = found.group("how").rstrip(".") if "how" in pattern.groupindex else ""
                events.append(LogEvent(at, found.group("slot"), kind, value, how))
    return events


def slot_state(events: Sequence[LogEvent], slot: str) -> tuple[int | None, bool]:
    """The pid of the slot's latest process (None before its first), and whether it was ready."""
    pid, ready = None, False
    for event in events:
        if event.slot == slot and event.kind == STARTED:
            pid, ready = event.value, False
        elif event.slot == slot and event.kind == READY:
            ready = True
    return pid, ready


def proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def rss_mib(pid: int) -> float:
    """VmRSS in MiB; 0 for a process that has ended."""
    return int(proc_status(pid).get("VmRSS", "0 kB").split()[0]) / 1024


def fd_kinds(pid: int) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        kinds[target.partition(":")[0] if ":" in target and not target.startswith("/") else "file"] += 1
    return kinds


@dataclass(frozen=True)
class Snapshot:
    router_rss: float
    router_threads: int
    router_fds: Counter[str]  # open file descriptors by kind: socket, pipe, anon_inode, file
    backends: dict[str, tuple[int, float]]  # slot → (pid, RSS MiB)

    @staticmethod
    def take(router: int, log: Path) -> Snapshot:
        events, children = log_events(log), backends_of(router)
        backends = {}
        for slot in SLOTS:
            pid, _ = slot_state(events, slot)
            if pid is None or pid not in children:
                raise RuntimeError(f"{slot}: no running backend process (latest: {pid})")
            backends[slot] = (pid, rss_mib(pid))
        return Snapshot(
            rss_mib(router),
            int(proc_status(router).get("Threads", "0")),
            fd_kinds(router),
            backends,
        )

    @property
    def backends_rss(self) -> float:
        return sum(rss for _, rss in self.backends.values())


@dataclass(frozen=True)
class Kill:
    at: float  # seconds since the epoch
    slot: str
    pid: int | None  # None: skipped, the slot had no running process
    was_ready: bool


@dataclass
class Soak:
    """What one soak recorded; times are time.monotonic unless named otherwise."""

    start: Snapshot
    started: float
    started_epoch: float
    ended: float = 0.0
    ended_epoch: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    router_rss_samples: list[float] = field(default_factory=list)
    end: Snapshot | None = None
    metrics: dict[str, float] = field(default_factory=dict)


async def kill_loop(router: int, log: Path, every: float, until: float, soak: Soak, console: Console) -> None:
    """SIGKILL the slots' backends in turn, every `every` seconds until `until`."""
    for turn in itertools.count():
        wake = soak.started + (turn + 1) * every
        if wake >= until:
            return
        await asyncio.sleep(wake - time.monotonic())
        soak.router_rss_samples.append(rss_mib(router))
        slot = SLOTS[turn % len(SLOTS)]
        pid, ready = slot_state(log_events(log), slot)
        if pid is None or not is_running(pid):
            soak.kills.append(Kill(time.time(), slot, None, False))
            console.print(f"{wake - soak.started:5.0f}s  {slot}: no process running (backoff); skipped")
            continue
        os.kill(pid, signal.SIGKILL)
        soak.kills.append(Kill(time.time(), slot, pid, ready))
        console.print(f"{wake - soak.started:5.0f}s  {slot}: SIGKILL process {pid}", style="dim")


async def warm_up(url: str, per_slot: int, max_tokens: int, hang_after: float) -> None:
    """Requests at once, enough for every slot to serve some; all must complete."""
    clients = [SoakClient(url, max_tokens, hang_after) for _ in range(per_slot * len(SLOTS))]
    outcomes = await asyncio.gather(*(c.request(PROMPTS[i]) for i, c in enumerate(clients)))
    await asyncio.gather(*(c.close() for c in clients))
    failed = [o for o in outcomes if o.kind != COMPLETED]
    if failed:
        raise RuntimeError(f"warm-up failed: {failed}")


async def until_every_slot_ready(router: int, log: Path, timeout: float) -> None:
    """Wait out the last killed slot's backoff and load (its backoff may be 30 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events, children = log_events(log), backends_of(router)
        states = [slot_state(events, slot) for slot in SLOTS]
        if all(ready and pid in children for pid, ready in states):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"not every slot was ready {timeout:.0f}s after the soak")


def router_metrics(url: str) -> dict[str, float]:
    """The model's retry, lost-request and in-flight figures from the router's /metrics."""
    wanted = {f"localmodel_router_{name}": name for name in (*ROUTER_GAUGES, *ROUTER_COUNTERS)}
    totals = dict.fromkeys(wanted.values(), 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        name, _, rest = line.partition("{")
        if name in wanted and f'model="{MODEL}"' in rest:
            totals[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return totals


async def soak(served: LocalMode, args: argparse.Namespace, console: Console) -> Soak:
    assert served.process is not None
    router, log = served.process.pid, served.log_path
    await warm_up(served.url, 2, args.max_tokens, args.hang_after)
    result = Soak(Snapshot.take(router, log), time.monotonic(), time.time())
    until = result.started + args.duration
    clients = [SoakClient(served.url, args.max_tokens, args.hang_after) for _ in range(args.clients)]
    killing = asyncio.create_task(kill_loop(router, log, args.kill_every, until, result, console))
    await asyncio.gather(
        *(c.run(i, until, args.pause_after_failure, result.outcomes) for i, c in enumerate(clients))
    )
    result.ended, result.ended_epoch = time.monotonic(), time.time()
    await killing
    await asyncio.gather(*(c.close() for c in clients))
    result.metrics = router_metrics(served.url)  # before the warm-up below adds to it
    await until_every_slot_ready(router, log, timeout=90)
    await warm_up(served.url, 2, args.max_tokens, args.hang_after)
    result.end = Snapshot.take(router, log)
    return result


@dataclass(frozen=True)
class Restart:
    kill: Kill
    backoffs: tuple[int, ...]  # the supervisor's delays before each start, until one was ready
    starts: int  # processes started until one was ready: more than 1 when one failed to start
    spawn_to_ready: float | None  # the ready one's start, model load and health check
    kill_to_ready: float | None


def restarts(kills: Sequence[Kill], events: Sequence[LogEvent]) -> list[Restart]:
    """For each delivered kill, the slot's backoffs and process starts until it was ready again."""
    found = []
    for kill in kills:
        if kill.pid is None:
            found.append(Restart(kill, (), 0, None, None))
            continue
        after = [e for e in events if e.slot == kill.slot and e.at >= kill.at]
        ready = next((e for e in after if e.kind == READY), None)
        until = [e for e in after if ready is None or e.at <= ready.at]
        spawned = [e for e in until if e.kind == STARTED]
        found.append(
            Restart(
                kill,
                tuple(e.value for e in until if e.kind == RESTARTING),
                len(spawned),
                ready.at - spawned[-1].at if ready and spawned else None,
                ready.at - kill.at if ready else None,
            )
        )
    return found


def without_replica(kills: Sequence[Kill], events: Sequence[LogEvent], start: float, end: float) -> float:
    """Seconds between `start` and `end` (epoch) in which no slot was ready."""
    changes = sorted(
        [(e.at, e.slot, True) for e in events if e.kind == READY]
        + [(k.at, k.slot, False) for k in kills if k.pid is not None]
    )
    up: set[str] = set()
    total, since = 0.0, None
    for at, slot, ready in changes:
        before = bool(up)
        if ready:
            up.add(slot)
        else:
            up.discard(slot)
        if before and not up:
            since = at
        elif up and not before and since is not None:
            total += max(0.0, min(at, end) - max(since, start))
            since = None
    if since is not None:
        total += max(0.0, end - max(since, start))
    return total


def fd_change(before: Counter[str], after: Counter[str]) -> str:
    kinds = ", ".join(f"{kind} {before[kind]} → {after[kind]}" for kind in sorted(before | after))
    return f"{before.total()} → {after.total()} ({kinds})"


def outcome_table(result: Soak, clients: int) -> Table:
    seconds, sent = result.ended - result.started, len(result.outcomes)
    counts = Counter(o.kind for o in result.outcomes)
    table = Table(title=f"SmolLM2-135M Q4_1, local mode, 2 replicas × 1 thread, {clients} streaming clients")
    for column in ("outcome", "requests", "share", "per s"):
        table.add_column(column, justify="left" if column == "outcome" else "right")
    for kind in OUTCOMES:
        share = counts[kind] / sent if sent else 0.0
        table.add_row(kind, str(counts[kind]), f"{share:.1%}", f"{counts[kind] / seconds:.2f}")
    table.add_row("sent", str(sent), "", f"{sent / seconds:.2f}")
    return table


def failures_table(outcomes: Sequence[Outcome], per_kind: int = 4) -> Table:
    """The commonest messages of each kind of failure."""
    table = Table(title="Failures: the commonest messages")
    for column in ("outcome", "requests", "message"):
        table.add_column(column, justify="right" if column == "requests" else "left")
    for kind in OUTCOMES[1:]:
        for detail, count in Counter(o.detail for o in outcomes if o.kind == kind).most_common(per_kind):
            table.add_row(kind, str(count), detail[:300])
    return table


def memory_table(start: Snapshot, end: Snapshot) -> Table:
    table = Table(title="RSS (VmRSS, MiB) after a warm-up, at the start and at the end")
    for column in ("process", "pid at start", "start", "pid at end", "end", "end ÷ start"):
        table.add_column(column, justify="left" if column == "process" else "right")

    def row(name: str, pids: tuple[str, str], before: float, after: float) -> None:
        table.add_row(name, pids[0], f"{before:.1f}", pids[1], f"{after:.1f}", f"{after / before:.2f}×")

    row("router (local mode)", ("", ""), start.router_rss, end.router_rss)
    for slot in SLOTS:
        (pid0, rss0), (pid1, rss1) = start.backends[slot], end.backends[slot]
        row(f"backend {slot}", (str(pid0), str(pid1)), rss0, rss1)
    row("backends, total", ("", ""), start.backends_rss, end.backends_rss)
    return table


def kills_table(found: Sequence[Restart], started_epoch: float) -> Table:
    table = Table(title="Kills and restarts (from local mode's log)")
    columns = ("at s", "slot", "pid", "state", "backoff s", "starts", "spawn → ready s", "kill → ready s")
    for column in columns:
        table.add_column(column, justify="right")
    for restart in found:
        kill = restart.kill
        state = "skipped" if kill.pid is None else ("ready" if kill.was_ready else "loading")
        figures = (restart.spawn_to_ready, restart.kill_to_ready)
        table.add_row(
            f"{kill.at - started_epoch:.0f}",
            kill.slot,
            str(kill.pid or "—"),
            state,
            " + ".join(str(delay) for delay in restart.backoffs) or "—",
            str(restart.starts) if kill.pid else "—",
            *(f"{v:.2f}" if v is not None else "—" for v in figures),
        )
    return table


def notes(result: Soak, args: argparse.Namespace, events: Sequence[LogEvent], watch: CpuWatch) -> list[str]:
    assert result.end is not None
    start, end = result.start, result.end
    seconds, sent = result.ended - result.started, len(result.outcomes)
    counts = Counter(o.kind for o in result.outcomes)
    found = restarts(result.kills, events)
    delivered = [r for r in found if r.kill.pid is not None]
    loads = [r.spawn_to_ready for r in delivered if r.spawn_to_ready is not None]
    starts = sum(1 for e in events if e.kind == STARTED)
    killed = {k.pid for k in result.kills}
    crashes = Counter(e.how for e in events if e.kind == EXITED and e.value not in killed)
    silences = [o.longest_silence for o in result.outcomes if o.kind == COMPLETED]
    machine = describe()
    others = max((share.others_share(machine["nproc"]) for share in watch.intervals), default=0.0)
    down = without_replica(result.kills, events, result.started_epoch, result.ended_epoch)
    samples = result.router_rss_samples or [0.0]
    flat = end.router_rss <= FLAT * start.router_rss and end.backends_rss <= FLAT * start.backends_rss
    met = counts[HUNG] == 0 and counts[OTHER] == 0 and flat
    return [
        f"CPU: {machine['cpu_model']}, {machine['nproc']} CPUs; other processes and steal in the "
        f"{QUIET_CHECK:.0f} s before the run: {others:.1%} of the machine",
        f"{seconds:.0f} s measured, {sent / seconds:.2f} requests/s sent, "
        f"{counts[COMPLETED] / seconds:.2f} completed/s, max_tokens {args.max_tokens}",
        f"kills: {len(delivered)} delivered, {len(found) - len(delivered)} skipped (slot in backoff); "
        f"backend starts in all: {starts} (2 at launch, {starts - 2 - len(delivered)} not after a kill)",
        "backend exits not caused by a kill: "
        + (", ".join(f"{n} × {how}" for how, n in crashes.most_common()) or "none"),
        f"spawn → ready: median {statistics.median(loads):.2f} s, max {max(loads):.2f} s"
        if loads
        else "spawn → ready: none seen",
        f"no replica ready for {down:.1f} s of {seconds:.0f} s",
        "router /metrics: " + ", ".join(f"{name} {value:g}" for name, value in result.metrics.items()),
        f"router threads {start.router_threads} → {end.router_threads}, open fds "
        f"{fd_change(start.router_fds, end.router_fds)}, "
        f"RSS at the kills {min(samples):.1f}–{max(samples):.1f} MiB",
        f"longest silence (no byte) in a completed request: {max(silences, default=0):.1f} s",
        f"Soak: {counts[HUNG]} hung requests, {counts[OTHER]} failures neither an error event nor an "
        f"HTTP error, RSS {'flat' if flat else 'NOT flat'} (end ≤ {FLAT:.2f}× start): "
        + ("met" if met else "NOT met"),
    ]


def report(result: Soak, args: argparse.Namespace, log: Path, watch: CpuWatch, console: Console) -> None:
    assert result.end is not None
    events = log_events(log)
    console.print(outcome_table(result, args.clients))
    console.print(failures_table(result.outcomes))
    console.print(memory_table(result.start, result.end))
    console.print(kills_table(restarts(result.kills, events), result.started_epoch))
    for line in notes(result, args, events, watch):
        console.print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds between SIGKILLs")
    parser.add_argument("--hang-after", type=float, default=30.0, help="seconds without a byte: hung")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--pause-after-failure", type=float, default=1.0, help="seconds a client waits after a failed request"
    )
    parser.add_argument("--log", type=Path, help="keep local mode's log here")
    args = parser.parse_args()

    model = ensure_model("smollm2")
    manifest = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": MODEL},
        "spec": {
            "model": {"url": model.as_uri()},
            "backend": {"engine": {"contextSize": 2048, "threads": 1}},
            "replicas": len(SLOTS),
        },
    }
    console = Console(width=max(Console().width, 120))
    watch = CpuWatch()
    time.sleep(QUIET_CHECK)
    watch.mark()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        (folder / "soak.yaml").write_text(yaml.safe_dump(manifest))
        served = LocalMode(["serve", "-f", str(folder / "soak.yaml")], folder / "cache", folder / "serve.log")
        try:
            with served:
                result = asyncio.run(soak(served, args, console))
                report(result, args, served.log_path, watch, console)
        finally:
            if args.log is not None:
                shutil.copyfile(served.log_path, args.log)


if __name__ == "__main__":
    main()
