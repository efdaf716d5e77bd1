"""The backend's gRPC server: Backend + grpc.health.v1 services, optional preload, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import grpc

from localmodel.backend_server import not_serving_health, start_grpc_server
from localmodel.wire import backend_pb2
from localmodel_llamacpp.batching import DEFAULT_MAX_WAITING, BatchingScheduler
from localmodel_llamacpp.engine import LlamaEngine
from localmodel_llamacpp.metrics import serve_metrics
from localmodel_llamacpp.servicer import BackendServicer

log = logging.getLogger(__name__)


class PreloadError(RuntimeError):
    """The model named on the command line could not be loaded."""


async def create_server(
    address: str, max_waiting: int = DEFAULT_MAX_WAITING, accepts_load_model: bool = True
) -> tuple[grpc.aio.Server, int, BackendServicer]:
    """A started server on `address` ("host:0" picks a free port) and the port it got."""
    health = await not_serving_health()
    servicer = BackendServicer(BatchingScheduler(LlamaEngine(), max_waiting), health, accepts_load_model)
    server, port = await start_grpc_server(address, servicer, health)
    return server, port, servicer


async def serve(
    address: str,
    preload: dict[str, Any] | None = None,
    grace_seconds: float = 30.0,
    metrics_port: int = 0,
    max_waiting: int = DEFAULT_MAX_WAITING,
    allow_load_model: bool = False,
) -> None:
    """Serve until SIGTERM or SIGINT, then finish in-flight requests (up to the grace period) and stop.
    A backend started with a model (`preload`) refuses LoadModel calls unless `allow_load_model`."""
    server, port, servicer = await create_server(address, max_waiting, preload is None or allow_load_model)
    log.info("backend listening", extra={"address": address, "port": port})
    if metrics_port:
        serve_metrics(servicer.scheduler, metrics_port)
        log.info("metrics listening", extra={"port": metrics_port})

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    if preload is not None:
        result = await servicer.LoadModel(backend_pb2.ModelOptions(**preload), context=None)
        if not result.success:
            await server.stop(grace=None)
            raise PreloadError(result.message)

    await stopping.wait()
    log.info("stopping: finishing in-flight requests", extra={"grace_seconds": grace_seconds})
    await servicer.health.enter_graceful_shutdown()  # probes see NOT_SERVING while we drain
    await server.stop(grace=grace_seconds)
    servicer.close()
    log.info("backend stopped")
