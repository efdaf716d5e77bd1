"""Cluster in a box: the API emulator, the operator and the router as their real entry points, and a
simulated node (tests/support/kubelet.py) running the pods' real commands. Only the node is simulated.

Models come from a stand-in Hugging Face Hub on loopback (tests/support/file_server.py) serving the real
SmolLM2, Gemma-3 and Whisper files under the names the examples use: the pods' `localmodel fetch` init
containers download them as in a cluster, with HF_ENDPOINT pointing at the stand-in (the node's
"network"). A Piper voice is copied into the claim its example reads it from.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from localmodel.sources import HuggingFaceSource, parse_source
from tests.support import waiting
from tests.support.api_server import Cluster
from tests.support.file_server import FileServer
from tests.support.kubelet import SimulatedNode
from tests.support.models import require_model
from tests.support.router import RouterProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GEMMA_URL = "hf://google/gemma-3-270m-GGUF/gemma-3-270m-q4_k_m.gguf"
AUTOSCALER_INTERVAL_SECONDS = 0.5


def example(file_name: str) -> tuple[str, dict[str, Any]]:
    """(name, spec) of a LocalModel in examples/."""
    manifest = yaml.safe_load((EXAMPLES / file_name).read_text())
    return manifest["metadata"]["name"], manifest["spec"]


@pytest.fixture(scope="session")
def model_hub(smollm2_path: Path) -> Iterator[FileServer]:
    """The stand-in Hub, serving SmolLM2 and Whisper under the examples' names and Gemma-3 at GEMMA_URL."""
    with FileServer() as hub:
        smollm2 = smollm2_path.read_bytes()
        for file_name in ("cpu.yaml", "scale-to-zero.yaml"):
            source = parse_source(example(file_name)[1]["model"]["url"])
            assert isinstance(source, HuggingFaceSource)
            hub.add_hub_file(source.repo_id, source.path_in_repo, smollm2)
        gemma = parse_source(GEMMA_URL)
        assert isinstance(gemma, HuggingFaceSource)
        hub.add_hub_file(gemma.repo_id, gemma.path_in_repo, require_model("gemma3").read_bytes())
        whisper = parse_source(example("whisper.yaml")[1]["model"]["url"])
        assert isinstance(whisper, HuggingFaceSource) and whisper.is_directory  # the whole repository
        for file in require_model("whisper").iterdir():
            hub.add_hub_file(whisper.repo_id, file.name, file.read_bytes())
        yield hub


class OperatorProcess:
    """`localmodel operator`, as users run it (KUBECONFIG from the environment)."""

    def __init__(self, router_url: str, log_file: Path) -> None:
        self._env = {
            **os.environ,
            "LOCALMODEL_OPERATOR_AUTOSCALER__ROUTER_URLS": f'["{router_url}"]',
            "LOCALMODEL_OPERATOR_AUTOSCALER__INTERVAL_SECONDS": str(AUTOSCALER_INTERVAL_SECONDS),
        }
        self._log_file = log_file
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = self._log_file.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "localmodel.cli", "operator", env=self._env, stdout=log, stderr=log
        )

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            return await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()


@dataclass
class Stack:
    cluster: Cluster
    node: SimulatedNode
    router: RouterProcess
    operator: OperatorProcess

    async def apply_example(self, file_name: str, **overrides: Any) -> str:
        name, spec = example(file_name)
        await self.cluster.apply_model(name, {**spec, **overrides})
        return name

    async def ready(self, name: str, replicas: int, timeout: float = 90) -> None:
        """The LocalModel says Ready with `replicas` ready replicas (the operator's view of the node)."""

        def check() -> bool:
            status = self.cluster.model(name).get("status", {})
            ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
            return bool(ready) and ready[0]["status"] == "True" and status.get("readyReplicas") == replicas

        await self.cluster.wait_for(check, f"{name} Ready with {replicas} replicas", timeout)


@pytest.fixture
async def stack(cluster: Cluster, model_hub: FileServer, tmp_path: Path) -> AsyncIterator[Stack]:
    node = SimulatedNode(cluster.server, tmp_path, env={"HF_ENDPOINT": model_hub.url})
    async with node, RouterProcess(["--discovery", "kubernetes"]) as router:
        operator = OperatorProcess(router.url, tmp_path / "operator.log")
        await operator.start()
        try:
            yield Stack(cluster, node, router, operator)
        finally:
            with contextlib.suppress(AssertionError):
                await operator.stop()


# A cluster converges in seconds, but on two busy cores a step can take many.
eventually = functools.partial(waiting.eventually, timeout=30.0, every=0.1)
