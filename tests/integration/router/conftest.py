"""Real backends (SmolLM2, Gemma-3-270M, an embedding backend) behind one real router."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from localmodel.ports import free_port
from tests.support.backend_process import BackendProcess
from tests.support.models import require_model
from tests.support.router import RouterProcess

GEMMA_MAX_TOKENS = 64


@pytest.fixture(scope="session")
def gemma_backend() -> Iterator[BackendProcess]:
    model = require_model("gemma3")
    with BackendProcess(["--model", str(model), "--context-size", "1024"]) as backend:
        backend.wait_ready()
        yield backend


@pytest.fixture(scope="session")
def unreachable() -> str:
    """An address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def router(
    chat_backend: BackendProcess,
    gemma_backend: BackendProcess,
    embedding_backend: BackendProcess,
    unreachable: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RouterProcess]:
    """The router with models from a config file (as users write one) plus a flag."""
    config = {
        "models": [
            {
                "name": "smollm2",
                "aliases": ["gpt-4o-mini"],
                "endpoints": [chat_backend.address],
                "sharesPrefill": True,  # n answers from one backend call; "flaky" gets one call per answer
            },
            {"name": "gemma3", "endpoints": [gemma_backend.address], "maxTokens": GEMMA_MAX_TOKENS},
            {"name": "smollm2-embed", "endpoints": [embedding_backend.address]},
            # First replica down: requests must move on to the second.
            {"name": "flaky", "endpoints": [unreachable, chat_backend.address]},
        ]
    }
    path = tmp_path_factory.mktemp("router") / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    with RouterProcess(["--model", f"down={unreachable}"], config=path) as running:
        yield running
