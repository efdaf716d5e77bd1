"""One backend process in local mode, kept alive: start, wait for gRPC health, watch, restart with backoff.

What a kubelet does for a pod, for one process: readiness is the grpc.health.v1 check turning SERVING (the
probe Kubernetes runs), liveness a periodic check, and a crashed process is restarted after a delay that
doubles with each quick crash.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localmodel.command import BackendCommand
from localmodel.crashes import TAIL_LINES, BackendExit
from localmodel.logs import LOG_FORMAT_VARIABLE
from localmodel.ports import free_port

log = logging.getLogger(__name__)

STABLE_AFTER_SECONDS = 60.0  # a process that ran this long resets the backoff
LIVENESS_PERIOD_SECONDS = 5.0
LIVENESS_FAILURES = 3  # consecutive failed checks before a live-but-stuck process is killed
# Retry connections fast while a backend starts: gRPC's default reconnect backoff (1 s and growing)
# would add up to a second to every cold start.
_RELAY_CHUNK = 64 * 1024
# The backend's stderr is a pipe to us; where we relay it to a person, it should write for one.
_LOG_FORMAT = {LOG_FORMAT_VARIABLE: "text"} if sys.stderr.isatty() else {}
_FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]


class BackendStartError(RuntimeError):
    """A backend process exited, or never reported SERVING, before its first readiness."""


def restart_delay(quick_failures: int) -> float:
    """Seconds before the next restart: 1, 2, 4 … capped at 30 (Kubernetes' CrashLoopBackOff, shorter)."""
    return float(min(2 ** max(quick_failures - 1, 0), 30))


class BackendSupervisor:
    """Keeps one backend process running; `address` is set while it is ready, and `on_change` is called
    whenever that changes."""

    def __init__(
        self,
        label: str,
        command_for: Callable[[str], BackendCommand],
        on_change: Callable[[], None],
        startup_timeout: float,
    ) -> None:
        self.label = label
        self.address: str | None = None
        self.last_exit: BackendExit | None = None  # how the latest process ended, until one is ready again
        self.died_starting = False  # the latest process ended before it was ready (a crash at load)
        self._command_for = command_for
        self._on_change = on_change
        self._startup_timeout = startup_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.first_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, give_up_if_first_start_fails: bool) -> None:
        self._task = asyncio.create_task(self._supervise(give_up_if_first_start_fails), name=self.label)

    async def stop(self, grace: float) -> None:
        """SIGTERM (the backend finishes in-flight requests), SIGKILL after `grace` seconds."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                log.warning("%s: still running %.0fs after SIGTERM; killing it", self.label, grace)
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if not self.first_ready.done():
            self.first_ready.cancel()

    async def _supervise(self, give_up_if_first_start_fails: bool) -> None:
        quick_failures = 0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            try:
                await self._run_once()
            except Exception as error:  # a start failure, or anything else: never die silently
                if not isinstance(error, BackendStartError):
                    log.exception("%s: supervising the backend failed", self.label)
                    error = BackendStartError(f"{type(error).__name__}: {error}")
                if give_up_if_first_start_fails and not self.first_ready.done():
                    self.first_ready.set_exception(error)
                    return
                log.error("%s: %s", self.label, error)
            if self._stopping:
                return
            quick_failures = 0 if loop.time() - started > STABLE_AFTER_SECONDS else quick_failures + 1
            delay = restart_delay(quick_failures)
            log.warning("%s: restarting in %.0fs", self.label, delay)
            await asyncio.sleep(delay)

    async def _run_once(self) -> None:
        """Start a process, publish it once ready, return when it has exited."""
        address = f"127.0.0.1:{free_port()}"
        command = self._command_for(address)
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            command.kind.module,
            *command.args,
            env={**os.environ, **_LOG_FORMAT, **command.env, "PYTHONUNBUFFERED": "1"},
            # Own process group: a terminal's Ctrl-C reaches local mode, which drains before stopping
            # backends, instead of killing the backends mid-request.
            start_new_session=True,
            preexec_fn=_exit_with_parent,
            # Relayed to our stderr as it comes; the last lines say why a crashed process died.
            stderr=asyncio.subprocess.PIPE,
        )
        log.info("%s: started process %d on %s", self.label, process.pid, address)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        relaying = asyncio.create_task(_relay_output(process, tail))
        try:
            async with grpc.aio.insecure_channel(address, options=_FAST_RECONNECT) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                if not await self._wait_serving(health, process):
                    ended = await self._ended(process, relaying, tail)
                    self.died_starting = True
                    self._on_change()  # the router tells waiting requests why
                    raise BackendStartError(ended.describe(f"process {process.pid}", " before it was ready"))
                self.address, self.last_exit, self.died_starting = address, None, False
                self._on_change()
                if not self.first_ready.done():
                    self.first_ready.set_result(None)
                log.info("%s: ready on %s", self.label, address)
                try:
                    await self._watch(health, process)
                    ended = await self._ended(process, relaying, tail)
                finally:
                    self.address = None
                    self._on_change()
        finally:
            relaying.cancel()
        if not self._stopping:
            log.error("%s: %s", self.label, ended.describe(f"process {process.pid}"))

    async def _ended(
        self, process: asyncio.subprocess.Process, relaying: asyncio.Task[None], tail: deque[str]
    ) -> BackendExit:
        """How the exited process ended, with its last output (read to the end first); kept in last_exit."""
        returncode = await process.wait()
        try:
            await asyncio.wait_for(asyncio.shield(relaying), 2.0)
        except TimeoutError:
            pass  # a grandchild holds the pipe open: what arrived so far will do
        self.last_exit = BackendExit.from_returncode(returncode, tail)
        return self.last_exit

    async def _wait_serving(
        self, health: health_pb2_grpc.HealthStub, process: asyncio.subprocess.Process
    ) -> bool:
        """True once the process serves; False if it exited first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._startup_timeout
        while loop.time() < deadline:
            if process.returncode is not None:
                return False
            if await _is_serving(health, timeout=1.0):
                return True
            await asyncio.sleep(0.05)
        process.kill()
        await process.wait()
        raise BackendStartError(f"not ready after {self._startup_timeout:.0f}s; killed it")

    async def _watch(self, health: health_pb2_grpc.HealthStub, process: asyncio.subprocess.Process) -> int:
        """Wait for the process to exit, killing it if it stops answering health checks."""
        exited = asyncio.ensure_future(process.wait())  # one waiter for the process's whole life
        failures = 0
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=LIVENESS_PERIOD_SECONDS)
                if done:
                    return exited.result()
                failures = 0 if await _is_serving(health, timeout=LIVENESS_PERIOD_SECONDS) else failures + 1
                if failures >= LIVENESS_FAILURES and process.returncode is None:
                    log.error(
                        "%s: %d health checks failed; killing process %d", self.label, failures, process.pid
                    )
                    process.kill()
        finally:
            exited.cancel()


async def _relay_output(process: asyncio.subprocess.Process, tail: deque[str]) -> None:
    """Copy the process's stderr to ours as it comes, keeping its last lines in `tail`. Read in chunks,
    not lines: a line longer than asyncio's line limit must not stop the copy (the child would block)."""
    assert process.stderr is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    partial = ""
    while chunk := await process.stderr.read(_RELAY_CHUNK):
        text = decoder.decode(chunk)
        sys.stderr.write(text)
        sys.stderr.flush()
        *lines, partial = (partial + text).split("\n")
        tail.extend(lines)
        partial = partial[-_RELAY_CHUNK:]
    if partial:
        tail.append(partial)


async def _is_serving(health: health_pb2_grpc.HealthStub, timeout: float) -> bool:
    try:
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


# Resolved here, in the parent: the child between fork and exec must not load libraries (other threads
# of the parent may hold the loader's locks).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1
_PARENT_PID = os.getpid()


def _exit_with_parent() -> None:
    """In the child, before exec: SIGTERM when local mode dies, even by SIGKILL (Linux), so no backend
    outlives it. A parent that died before this ran is noticed by the changed parent id."""
    if _PRCTL is not None:
        parent = _PARENT_PID
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)
