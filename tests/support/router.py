"""The real router as a child process on a free loopback port (as vLLM's tests run RemoteOpenAIServer)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx
import openai

from localmodel.ports import free_port


class RouterProcess:
    def __init__(
        self, args: Sequence[str], env: dict[str, str] | None = None, config: Path | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "localmodel_router", "--host", "127.0.0.1", "--port", str(self.port)]
        if config is not None:
            command += ["--config", str(config)]
        self._command = [*command, *args]
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RouterProcess:
        return asyncio.run(self.__aenter__())

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def __aenter__(self) -> RouterProcess:
        """Started without blocking the event loop (where a test's API server may be running)."""
        self.process = subprocess.Popen(self._command, env=self._env)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"router exited with code {self.process.returncode}: {self._command}")
                try:
                    if (await client.get(f"{self.url}/healthz", timeout=1)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("router did not answer /healthz within 60s")
                await asyncio.sleep(0.1)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.__exit__, exc_type, exc, tb)

    def client(self, api_key: str = "not-needed") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=120)

    def async_client(self, api_key: str = "not-needed") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=120)
