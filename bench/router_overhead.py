"""What the router adds to a request: latency, streaming rate and memory, against calling a backend directly.

Both paths end at the same zero-cost fake backend (tests/support/fake_backend.py), run as a process of its
own so that it does not share an event loop with the router: every microsecond measured beyond the direct
gRPC call is the router's (HTTP parsing, validation, translation, its own gRPC client, SSE encoding).
Direct and routed requests alternate, so drift in the machine's speed hits both equally.

    python -m bench.router_overhead [--requests 2000] [--streams 200] [--memory-requests 10000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from localmodel.ports import free_port
from localmodel.wire import backend_pb2, backend_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]  # `python -m tests.support.fake_backend` runs from here
MODEL = "fake"
MAX_TOKENS = 16
USER = [{"role": "user", "content": "hi"}]
# What the router sends the backend for the chat body below; the direct path sends the same.
DIRECT_REQUEST = backend_pb2.PredictOptions(
    messages=[backend_pb2.Message(role="user", content="hi")], use_tokenizer_template=True, tokens=MAX_TOKENS
)
DIRECT_STREAM = backend_pb2.PredictOptions(
    messages=[backend_pb2.Message(role="user", content="hi")], use_tokenizer_template=True
)
ROUTED_REQUEST = {"model": MODEL, "messages": USER, "max_tokens": MAX_TOKENS}
ROUTED_STREAM = {"model": MODEL, "messages": USER, "stream": True}


class BenchError(RuntimeError):
    """A process of the benchmark could not be started or did not get ready."""


def spawn(args: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise BenchError(f"{what} exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.1)


def fake_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False  # not listening yet
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def router_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def require_router_module() -> None:
    try:
        found = importlib.util.find_spec("localmodel_router.__main__") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise SystemExit(
            "the router is not installed: `python -m localmodel_router` needs localmodel_router/__main__.py "
            "(run `pip install -e .` once the router exists)"
        )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise BenchError(f"no VmRSS for process {pid}")


def timed(call: Callable[[], object]) -> float:
    """Seconds one call took."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Paths:
    """The two ways to the fake backend: its gRPC stub, and the router's HTTP API."""

    def __init__(self, stub: backend_pb2_grpc.BackendStub, client: httpx.Client) -> None:
        self._stub = stub
        self._client = client

    def direct(self) -> None:
        self._stub.Predict(DIRECT_REQUEST)

    def routed(self) -> None:
        self._client.post("/v1/chat/completions", json=ROUTED_REQUEST).raise_for_status()

    def direct_stream(self) -> int:
        return sum(1 for _ in self._stub.PredictStream(DIRECT_STREAM))

    def routed_stream(self) -> int:
        """`data:` events before `data: [DONE]` (read to the end, so the connection is kept for the next)."""
        chunks, done = 0, False
        with self._client.stream("POST", "/v1/chat/completions", json=ROUTED_STREAM) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data:") and not done:
                    chunks += 1
        if not done:
            raise BenchError("the router's stream ended without data: [DONE]")
        return chunks


def measure(paths: Paths, args: argparse.Namespace, router_pid: int, console: Console) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for _ in range(args.warmup):
        paths.direct()
        paths.routed()
    for _ in range(max(args.warmup // 20, 1)):
        paths.direct_stream()
        paths.routed_stream()
    figures["rss_warm"] = rss_mib(router_pid)

    console.print(f"latency: {args.requests} non-streamed requests each way", style="dim")
    direct, routed = [], []
    for _ in range(args.requests):
        direct.append(timed(paths.direct))
        routed.append(timed(paths.routed))
    figures["latency"] = {
        name: (percentile(v, 50), percentile(v, 99)) for name, v in (("direct", direct), ("routed", routed))
    }

    console.print(f"streaming: {args.streams} streams of {args.pieces} pieces each way", style="dim")
    seconds = {"direct": 0.0, "routed": 0.0}
    chunks = {"direct": 0, "routed": 0}
    for _ in range(args.streams):
        for name, run in (("direct", paths.direct_stream), ("routed", paths.routed_stream)):
            started = time.perf_counter()
            chunks[name] += run()
            seconds[name] += time.perf_counter() - started
    figures["streaming"] = {name: (chunks[name], seconds[name]) for name in seconds}

    console.print(
        f"memory: {args.memory_requests} more non-streamed requests through the router", style="dim"
    )
    figures["rss_before"] = rss_mib(router_pid)
    started = time.perf_counter()
    for _ in range(args.memory_requests):
        paths.routed()
    figures["memory_seconds"] = time.perf_counter() - started
    figures["rss_after"] = rss_mib(router_pid)
    return figures


def report(figures: dict[str, Any], args: argparse.Namespace, console: Console) -> None:
    ms = 1000.0
    table = Table(title=f"Router overhead over a zero-cost fake backend ({os.cpu_count()} CPUs)")
    table.add_column("measure", no_wrap=True)
    for column in ("direct gRPC", "via router", "router adds", "target"):
        table.add_column(column, justify="right")
    (d50, d99), (r50, r99) = figures["latency"]["direct"], figures["latency"]["routed"]
    table.add_row(
        "latency p50, ms", f"{d50 * ms:.3f}", f"{r50 * ms:.3f}", f"{(r50 - d50) * ms:+.3f}", "<= 1 ms added"
    )
    table.add_row("latency p99, ms", f"{d99 * ms:.3f}", f"{r99 * ms:.3f}", f"{(r99 - d99) * ms:+.3f}", "")
    (dc, ds), (rc, rs) = figures["streaming"]["direct"], figures["streaming"]["routed"]
    table.add_row("chunks per stream", f"{dc / args.streams:.0f}", f"{rc / args.streams:.0f}", "", "")
    table.add_row("chunks/s", f"{dc / ds:,.0f}", f"{rc / rs:,.0f}", f"ratio {(rc / rs) / (dc / ds):.2f}", "")
    table.add_row(
        "ms per stream",
        f"{ds / args.streams * ms:.2f}",
        f"{rs / args.streams * ms:.2f}",
        f"x{rs / ds:.2f}",
        "",
    )
    grown = figures["rss_after"] - figures["rss_before"]
    table.add_row("router RSS, warm, MiB", "", f"{figures['rss_warm']:.1f}", "", "")
    table.add_row("router RSS, before, MiB", "", f"{figures['rss_before']:.1f}", "", "")
    rate = args.memory_requests / figures["memory_seconds"]
    table.add_row(
        f"router RSS, +{args.memory_requests:,} req, MiB",
        "",
        f"{figures['rss_after']:.1f}",
        f"{grown:+.1f} MiB",
        "flat",
    )
    table.add_row("router req/s, 1 client", "", f"{rate:,.0f}", "", "")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="non-streamed requests each way")
    parser.add_argument("--streams", type=int, default=200, help="streamed requests each way")
    parser.add_argument("--pieces", type=int, default=64, help="pieces the fake streams per request")
    parser.add_argument(
        "--warmup", type=int, default=200, help="non-streamed requests each way before measuring"
    )
    parser.add_argument(
        "--memory-requests", type=int, default=10_000, help="requests between the RSS readings"
    )
    args = parser.parse_args()
    console = Console()
    require_router_module()

    fake_address = f"127.0.0.1:{free_port()}"
    router_port = free_port()
    url = f"http://127.0.0.1:{router_port}"
    fake: subprocess.Popen[bytes] | None = None
    router: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryFile() as fake_log, tempfile.TemporaryFile() as router_log:
        try:
            fake = spawn(
                ["tests.support.fake_backend", "--addr", fake_address, "--pieces", str(args.pieces)], fake_log
            )
            wait_until(lambda: fake_serving(fake_address), fake, "the fake backend", 30)
            router_args = [
                "--host",
                "127.0.0.1",
                "--port",
                str(router_port),
                "--model",
                f"{MODEL}={fake_address}",
            ]
            router = spawn(["localmodel_router", *router_args, "--log-level", "WARNING"], router_log)
            wait_until(lambda: router_ready(url), router, "the router", 60)
            with (
                grpc.insecure_channel(fake_address) as channel,
                httpx.Client(base_url=url, timeout=30) as client,
            ):
                stub = backend_pb2_grpc.BackendStub(channel)  # type: ignore[no-untyped-call]
                figures = measure(Paths(stub, client), args, router.pid, console)
        except BaseException:
            for name, log in (("fake backend", fake_log), ("router", router_log)):
                log.seek(0)
                tail = log.read()[-4000:].decode(errors="replace").strip()
                if tail:
                    console.print(f"--- {name} output (last lines) ---\n{tail}", style="dim", markup=False)
            raise
        finally:
            stop(router)
            stop(fake)
    report(figures, args, console)


if __name__ == "__main__":
    main()
