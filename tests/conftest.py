"""Session fixtures: the real SmolLM2 GGUF and real backend processes on loopback; the Kubernetes API
emulator for the suites that need one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import kmock
import pytest

from localmodel.wire import backend_pb2_grpc
from tests.support.api_server import ApiServer, Cluster, declare
from tests.support.backend_process import BackendProcess
from tests.support.models import require_model

CHAT_CONTEXT = 2048


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return require_model("smollm2")


def _started(args: list[str]) -> Iterator[BackendProcess]:
    with BackendProcess(args) as backend:
        backend.wait_ready()
        yield backend


@pytest.fixture(scope="session")
def chat_backend(smollm2_path: Path) -> Iterator[BackendProcess]:
    """One backend serving SmolLM2 for generation, shared by the tests that do not change it."""
    yield from _started(["--model", str(smollm2_path), "--context-size", str(CHAT_CONTEXT)])


@pytest.fixture(scope="session")
def embedding_backend(smollm2_path: Path) -> Iterator[BackendProcess]:
    yield from _started(["--model", str(smollm2_path), "--embeddings"])


def _stub(backend: BackendProcess) -> Iterator[backend_pb2_grpc.BackendStub]:
    with grpc.insecure_channel(backend.address) as channel:
        yield backend_pb2_grpc.BackendStub(channel)


@pytest.fixture
def chat(chat_backend: BackendProcess) -> Iterator[backend_pb2_grpc.BackendStub]:
    yield from _stub(chat_backend)


@pytest.fixture
def embedder(embedding_backend: BackendProcess) -> Iterator[backend_pb2_grpc.BackendStub]:
    yield from _stub(embedding_backend)


@pytest.fixture
def idle_backend() -> Iterator[BackendProcess]:
    """A backend of its own with no model loaded (for tests that load, fail or stop it)."""
    with BackendProcess() as backend:
        yield backend


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    """kmock's Kubernetes emulator (extended in tests/support/api_server.py) on loopback; KUBECONFIG
    points at it for this test and the processes it starts."""
    async with ApiServer() as server, kmock.Server(server):
        cluster, kubeconfig = declare(server, tmp_path)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        yield cluster
