"""Repacking through the backend contract: `repack:off` keeps every weight in plain CPU buffers, and the
default (`auto`) repacks exactly where this machine's decision says (never where AMX kernels would run)."""

from __future__ import annotations

import grpc
import pytest

from localmodel.wire import backend_pb2, backend_pb2_grpc
from localmodel_llamacpp.engine import repack_decision
from tests.support.backend_process import BackendProcess
from tests.support.models import require_model

PLAIN_BUFFERS = {"weights_CPU", "weights_CPU_Mapped"}


def weight_buffers(backend: backend_pb2_grpc.BackendStub, options: list[str]) -> set[str]:
    # Gemma's Q4_K layers have repacked kernels on x86 (AVX2) and ARM: a model that shows the difference.
    gemma = require_model("gemma3")
    loaded = backend.LoadModel(
        backend_pb2.ModelOptions(model_file=str(gemma), context_size=512, options=options)
    )
    assert loaded.success, loaded.message
    breakdown = backend.Status(backend_pb2.HealthMessage()).memory.breakdown
    return {key for key in breakdown if key.startswith("weights_")}


@pytest.mark.parametrize("mode", ["off", "auto"])
def test_repack_option_decides_where_the_weights_go(idle_backend: BackendProcess, mode: str) -> None:
    idle_backend.wait_ready_to_connect()
    with grpc.insecure_channel(idle_backend.address) as channel:
        buffers = weight_buffers(backend_pb2_grpc.BackendStub(channel), [f"repack:{mode}"])
        # Either way the backend generates: the warm-up and a request both ran on these buffers.
        reply = backend_pb2_grpc.BackendStub(channel).Predict(
            backend_pb2.PredictOptions(prompt="The sea", tokens=4)
        )
    assert reply.tokens == 4
    assert buffers and buffers & PLAIN_BUFFERS
    repacks = mode == "auto" and repack_decision("auto").repack
    assert ("weights_CPU_REPACK" in buffers) is repacks, buffers
    if not repacks:
        assert buffers <= PLAIN_BUFFERS, buffers  # nothing in the AMX or any other extra buffer type
