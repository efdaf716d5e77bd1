"""Health transitions and LoadModel, including the failures that must not take the server down."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localmodel.wire import backend_pb2, backend_pb2_grpc
from tests.support.backend_process import BackendProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_of(channel: grpc.Channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service)).status


def test_health_turns_serving_once_a_model_is_loaded(
    idle_backend: BackendProcess, smollm2_path: Path
) -> None:
    idle_backend.wait_ready_to_connect()
    with grpc.insecure_channel(idle_backend.address) as channel:
        backend = backend_pb2_grpc.BackendStub(channel)
        assert backend.Health(backend_pb2.HealthMessage()).message == b"OK"  # alive before a model
        assert health_of(channel) == NOT_SERVING
        assert health_of(channel, "backend.Backend") == NOT_SERVING
        assert backend.Status(backend_pb2.HealthMessage()).state == backend_pb2.StatusResponse.UNINITIALIZED

        with pytest.raises(grpc.RpcError) as caught:
            backend.Predict(backend_pb2.PredictOptions(prompt="hello", tokens=4))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # LocalAI names the file inside a models directory.
        result = backend.LoadModel(
            backend_pb2.ModelOptions(
                model=smollm2_path.name, model_path=str(smollm2_path.parent), context_size=512
            )
        )
        assert result.success, result.message
        assert health_of(channel) == SERVING
        assert health_of(channel, "backend.Backend") == SERVING
        assert backend.Status(backend_pb2.HealthMessage()).state == backend_pb2.StatusResponse.READY
        assert backend.Predict(backend_pb2.PredictOptions(prompt="Hello", tokens=3)).tokens == 3


def test_bad_model_files_fail_cleanly_and_keep_the_loaded_model(
    idle_backend: BackendProcess, smollm2_path: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.gguf"
    with smollm2_path.open("rb") as source:
        truncated.write_bytes(source.read(5_000_000))  # a valid header, tensor data cut short
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("this is not a model")

    idle_backend.wait_ready_to_connect()
    with grpc.insecure_channel(idle_backend.address) as channel:
        backend = backend_pb2_grpc.BackendStub(channel)
        assert backend.LoadModel(backend_pb2.ModelOptions(model_file=str(smollm2_path), mmap=True)).success

        cases = {
            str(tmp_path / "missing.gguf"): "not found",
            str(truncated): "not within the file bounds",
            str(not_gguf): "not a GGUF file",
        }
        for path, reason in cases.items():
            result = backend.LoadModel(backend_pb2.ModelOptions(model_file=path))
            assert not result.success
            assert reason in result.message and path in result.message

        # Still alive, still serving the model that was loaded before, and still batching it.
        assert backend.Health(backend_pb2.HealthMessage()).message == b"OK"
        assert health_of(channel) == SERVING
        assert backend.Predict(backend_pb2.PredictOptions(prompt="Hello", tokens=2)).tokens == 2
        scheduler = backend.Status(backend_pb2.HealthMessage()).scheduler
        assert (scheduler.mode, scheduler.slots) == ("batching", 4)
        # The batch decoders' full context is still there (the tokenizing context alone holds 512).
        long_prompt = backend_pb2.PredictOptions(prompt="one two three four " * 300, tokens=2)
        assert backend.Predict(long_prompt).prompt_tokens > 1000


def test_bad_load_options_name_the_field(idle_backend: BackendProcess, smollm2_path: Path) -> None:
    idle_backend.wait_ready_to_connect()
    with grpc.insecure_channel(idle_backend.address) as channel:
        backend = backend_pb2_grpc.BackendStub(channel)
        result = backend.LoadModel(backend_pb2.ModelOptions(model_file=str(smollm2_path), context_size=-5))
        assert not result.success and "context_size" in result.message
        result = backend.LoadModel(backend_pb2.ModelOptions())
        assert not result.success and "no model file" in result.message


def test_preloading_a_missing_model_exits_with_an_error(tmp_path: Path) -> None:
    backend = BackendProcess(["--model", str(tmp_path / "missing.gguf")]).start()
    assert backend.process is not None
    assert backend.process.wait(timeout=60) == 1


def test_a_backend_started_with_its_model_refuses_load_model_unless_allowed(smollm2_path: Path) -> None:
    # Anyone who can reach a pod's port could otherwise swap its model or make it read another path.
    for allowed in (False, True):
        flags = ["--model", str(smollm2_path), "--context-size", "512"] + (["--allow-load-model"] * allowed)
        with BackendProcess(flags) as process:
            process.wait_ready()
            with grpc.insecure_channel(process.address) as channel:
                backend = backend_pb2_grpc.BackendStub(channel)
                load = backend_pb2.ModelOptions(model_file=str(smollm2_path), context_size=256)
                if allowed:
                    assert backend.LoadModel(load).success
                else:
                    with pytest.raises(grpc.RpcError) as refused:
                        backend.LoadModel(load)
                    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                    assert "--allow-load-model" in refused.value.details()
                assert backend.Predict(backend_pb2.PredictOptions(prompt="Hi", tokens=2)).tokens == 2
