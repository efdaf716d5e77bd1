"""Fixtures shared by the integration suites that need a Kubernetes API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest

from tests.support.api_server import ApiServer, Cluster, declare


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    """kmock's Kubernetes emulator (extended in tests/support/api_server.py) on loopback; KUBECONFIG
    points at it for this test and the processes it starts."""
    async with ApiServer() as server, kmock.Server(server):
        cluster, kubeconfig = declare(server, tmp_path)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        yield cluster
