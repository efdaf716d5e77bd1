"""The committed gRPC stubs are exactly what grpcio-tools makes from proto/backend.proto."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[3]
STUBS = ("backend_pb2.py", "backend_pb2.pyi", "backend_pb2_grpc.py")


def test_stubs_are_fresh(tmp_path: Path) -> None:
    # Mapping the include path onto the package folder makes the stubs import as `localmodel.wire`.
    args = [
        "protoc",
        f"-Ilocalmodel/wire={ROOT / 'proto'}",
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
    ]
    code = protoc.main([*args, f"--pyi_out={tmp_path}", str(ROOT / "proto" / "backend.proto")])
    assert code == 0, "protoc failed on proto/backend.proto"
    for name in STUBS:
        fresh = (tmp_path / "localmodel" / "wire" / name).read_text()
        assert (ROOT / "localmodel" / "wire" / name).read_text() == fresh, (
            f"localmodel/wire/{name} is stale; regenerate with the command at the top of proto/backend.proto"
        )


def test_rpc_paths_keep_localai_names() -> None:
    from localmodel.wire import backend_pb2

    service = backend_pb2.DESCRIPTOR.services_by_name["Backend"]
    assert service.full_name == "backend.Backend"
    assert {m.name for m in service.methods} >= {
        "Health",
        "LoadModel",
        "Predict",
        "PredictStream",
        "Embedding",
        "TokenizeString",
        "Status",
        "Rerank",
        "GetMetrics",
    }
