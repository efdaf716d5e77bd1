"""`localmodel serve` as a child process (the real entry point), ready once it prints its banner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import openai

from localmodel.ports import free_port

BANNER = "OpenAI-compatible API at"


class LocalMode:
    def __init__(self, args: Sequence[str], cache_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable, "-m", "localmodel.cli", *args,
            "--port", str(self.port), "--cache-dir", str(cache_dir), "--log-level", "INFO",
        ]  # fmt: skip
        self.log_path = log_path
        self.stdout: list[str] = []
        self._banner = threading.Event()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> LocalMode:
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        return self

    def wait_serving(self, timeout: float = 180.0) -> LocalMode:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self._banner.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"local mode is not serving (exit code {self.process.poll()}); its log:\n{self.log()}"
                )
        return self

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text()

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=120)

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line)
            if BANNER in line:
                self._banner.set()

    def __enter__(self) -> LocalMode:
        return self.start().wait_serving()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
