"""Run a backend as a child process on a free loopback port and wait until it is ready.

For the tests, the benchmarks and the demo (local mode has its own supervisor): readiness is the
standard grpc.health.v1 check turning SERVING, exactly what a Kubernetes gRPC probe asks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localmodel.ports import free_port


class BackendNotReadyError(RuntimeError):
    """The backend process exited or did not report SERVING in time."""


class BackendProcess:
    """`localmodel backend` as a child process; a context manager that stops it on exit."""

    def __init__(
        self,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        log_file: IO[bytes] | None = None,
        module: str = "localmodel_llamacpp",  # the engine package run as `python -m`
    ) -> None:
        self.host = host
        self.module = module
        self.port = free_port(host)
        self.address = f"{host}:{self.port}"
        self._args = list(args)
        self._log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BackendProcess:
        command = [sys.executable, "-m", self.module, "--addr", self.address, *self._args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, env=env, stdout=self._log_file, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the health service says SERVING (a model is loaded); fail early if the process dies."""
        self._wait_for_health({health_pb2.HealthCheckResponse.SERVING}, timeout)

    def wait_ready_to_connect(self, timeout: float = 60.0) -> None:
        """Block until the server answers at all (before any model is loaded)."""
        answers = {health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING}
        self._wait_for_health(answers, timeout)

    def _wait_for_health(self, wanted: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                self._raise_if_exited()
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status in wanted:
                        return
                except grpc.RpcError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise BackendNotReadyError(f"backend at {self.address} not ready after {timeout:.0f}s")
                time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL after `timeout`; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def _raise_if_exited(self) -> None:
        assert self.process is not None, "start() first"
        if self.process.poll() is not None:
            raise BackendNotReadyError(
                f"backend exited with code {self.process.returncode} before it was ready"
            )

    def __enter__(self) -> BackendProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
