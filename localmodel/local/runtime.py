"""Local mode's composition root: fetch the models, run the router in-process over local discovery, start
each model's backend processes, and on SIGTERM/Ctrl-C drain the router before stopping every process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console

from localmodel.cpus import available_cpus
from localmodel.fetch import ModelCache, fetch
from localmodel.local.banner import serving_banner
from localmodel.local.group import ModelGroup
from localmodel.local.supervisor import BackendStartError
from localmodel.manifests import Manifest
from localmodel.sources import parse_source
from localmodel.spec import LocalModel
from localmodel_router.app import create_app
from localmodel_router.discovery import ModelRoute
from localmodel_router.discovery.local import LocalDiscovery
from localmodel_router.discovery.routes import route_for
from localmodel_router.load import ModelLoad
from localmodel_router.settings import RouterSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalSettings:
    router: RouterSettings
    cache: ModelCache
    startup_timeout_seconds: float = 600.0  # model load included; large models on slow disks take minutes
    drain_seconds: float = 30.0  # on shutdown, for in-flight requests (router) and then for each backend


@dataclass(frozen=True)
class LocalServedModel:
    model: LocalModel
    path: Path | None  # None: an external backend serves it (spec.backend.address)


def resolve_models(manifests: list[Manifest], cache: ModelCache) -> list[LocalServedModel]:
    """Fetch every model file (with progress) before anything starts; FetchError/SourceError stop here."""
    resolved = []
    for manifest in manifests:
        source = manifest.model.spec.model
        path = None
        if source is not None and manifest.model.spec.backend.address is None:
            path = fetch(parse_source(source.url, manifest.base_dir), cache, source.sha256)
        resolved.append(LocalServedModel(manifest.model, path))
    return resolved


def local_routes(models: list[LocalServedModel], created: int) -> list[ModelRoute]:
    """Each model routed as the cluster's discovery routes it (the same function), stamped `created`."""
    return [route_for(served.model, created=created) for served in models]


def threads_per_backend(models: list[LocalServedModel], cpus: int) -> int | None:
    """Each local backend's share of the CPUs when several run at once (None for one: it takes all).

    llama.cpp's threads spin at every barrier of a decode step, so backends whose threads together
    outnumber the cores stall each other: two SmolLM2 backends of 2 threads each on 2 cores fell from
    130+ to between 1 and 40 tokens/s each, while with 1 thread each both kept 133 tokens/s."""
    processes = sum(backend_processes(served) for served in models if served.path is not None)
    return max(1, cpus // processes) if processes > 1 else None


def backend_processes(served: LocalServedModel) -> int:
    """The backend processes local mode runs for a model: its replicas, one at least."""
    spec = served.model.spec
    return max(1, spec.initial_replicas, spec.replicas or 0)


class _RouterServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Local mode owns SIGINT/SIGTERM: uvicorn's own handling would re-raise the signal after draining
        # and end the process before the backends are stopped.
        yield


async def run(models: list[LocalServedModel], settings: LocalSettings) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 when a backend could not start."""
    load = ModelLoad()
    groups: dict[str, ModelGroup] = {}
    discovery = LocalDiscovery(local_routes(models, int(time.time())), wake=lambda name: groups[name].wake())
    threads = threads_per_backend(models, available_cpus())
    if threads is not None:
        log.info("several backends share the CPUs: %d thread(s) each where a spec sets none", threads)
    for served in models:
        if served.path is not None:
            groups[served.model.served_name] = ModelGroup(
                served.model,
                served.path,
                discovery,
                load,
                settings.startup_timeout_seconds,
                settings.drain_seconds,
                threads,
            )
    listener = bind_listener(settings.router.host, settings.router.port)
    server = _RouterServer(
        uvicorn.Config(
            create_app(settings.router, discovery, load),
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(settings.drain_seconds),
        )
    )
    stop_signals = _on_stop_signals(server)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    starting: asyncio.Future[list[None]] = asyncio.ensure_future(
        asyncio.gather(*(group.start() for group in groups.values()))
    )
    try:
        first: list[asyncio.Future[Any]] = [serving, starting]
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is not None:
            log.error("a backend could not start: %s", starting.exception())
            server.should_exit = True
            await serving
            return 1
        if starting.done():
            url = _url(listener)
            Console().print(
                serving_banner(url, [served.model for served in models], settings.router), soft_wrap=True
            )
        await serving
        return 0
    finally:
        starting.cancel()
        with suppress(asyncio.CancelledError, BackendStartError):
            await starting
        log.info("stopping %d backend group(s)", len(groups))
        await asyncio.gather(*(group.stop() for group in groups.values()))
        stop_signals()
        listener.close()


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind before anything starts, so that a port in use is a clear error rather than a late one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol named, not 0: asyncio sets TCP_NODELAY only on connections of a socket whose proto is
    # IPPROTO_TCP. Without it Nagle's algorithm held streamed tokens back until the client's delayed ACK,
    # about 40 ms, and sent them in bursts.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    return listener


def _url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/v1"


def _on_stop_signals(server: uvicorn.Server) -> Callable[[], None]:
    """First SIGINT/SIGTERM: drain and stop. A second one: stop without waiting for requests."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            log.warning("stopping now, without waiting for requests in flight")
            server.force_exit = True
        log.info("stopping: finishing requests in flight first")
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)

    def restore() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return restore
