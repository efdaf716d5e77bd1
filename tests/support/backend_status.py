"""What a backend reports about itself over its gRPC Status call, for tests that watch routing."""

from __future__ import annotations

import grpc

from localmodel.wire import backend_pb2, backend_pb2_grpc


async def running_requests(address: str) -> int:
    """Generations the backend at `address` is running now."""
    async with grpc.aio.insecure_channel(address) as channel:
        status = await backend_pb2_grpc.BackendStub(channel).Status(backend_pb2.HealthMessage())  # type: ignore[no-untyped-call]
    return int(status.scheduler.running)
