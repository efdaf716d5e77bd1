"""What every localmodel backend's gRPC server does, whatever its engine runs.

An engine package (backend-images/<folder>/) supplies a servicer built on `EngineServicer` with its
model calls, and a `main` that calls `run_backend`. This module gives them all the same outside:

- the Backend service's Health, LoadModel and Status, and grpc.health.v1 (NOT_SERVING until the model
  is loaded: what Kubernetes' gRPC probes and local mode's supervisor ask);
- `WorkQueue`: the engine's blocking calls in worker threads, `slots` at once, a bounded queue
  (RESOURCE_EXHAUSTED beyond it) and, once stopping, refusals the router may replay elsewhere;
- each call acknowledged as it starts (localmodel/refusals.py) and engine errors as gRPC status codes;
- the command line every backend shares (`--addr`, `--model`, `--threads`, `--grace-period`, ...), a
  graceful stop on SIGTERM, and Prometheus metrics of the queue on `--metrics-port`.

The llama.cpp backend keeps its own scheduler (continuous batching over lanes) and server; it takes the
constants and the Prometheus names from here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from localmodel.logs import configure_logging
from localmodel.refusals import STARTED_METADATA, refusal
from localmodel.wire import backend_pb2, backend_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

# Services whose readiness follows the model; "" (the whole server) is what Kubernetes' gRPC probe asks.
HEALTH_SERVICES = ("", "backend.Backend")
# Long prompts and audio files arrive in one message; gRPC's 4 MiB default is too small for them.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_WAITING = 64
_State = backend_pb2.StatusResponse.State


class PreloadError(RuntimeError):
    """The model named on the command line could not be loaded."""


class EngineError(Exception):
    """An engine's refusal of one call; `code` is the gRPC status the caller gets."""

    code = grpc.StatusCode.INTERNAL


class InvalidInputError(EngineError):
    """The request cannot be served as sent (undecodable audio, an unknown voice): the client's to fix."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotLoadedError(EngineError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class BusyError(EngineError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED  # the router answers 429 with Retry-After


class StoppingError(EngineError):
    code = grpc.StatusCode.UNAVAILABLE  # a refusal before any work: the router retries another replica


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why (a LoadModel Result, not a status)."""


class WorkQueue:
    """Blocking engine calls, `slots` at a time in worker threads, the rest waiting (at most
    `max_waiting`); closed, it refuses new calls and lets the running ones finish."""

    def __init__(self, slots: int = 1, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.slots = slots
        self.max_waiting = max_waiting
        self.running = 0
        self.waiting = 0
        self._free = asyncio.Semaphore(slots)
        self._closed = False

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._closed:
            raise StoppingError(refusal("the backend is stopping"))
        if self.waiting >= self.max_waiting:
            raise BusyError(f"{self.waiting} requests are waiting already; retry later")
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._free.release()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        async with self._slot():
            work = asyncio.ensure_future(asyncio.to_thread(function, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # A thread cannot be stopped: the slot stays taken until it has finished its work.
                await asyncio.gather(work, return_exceptions=True)
                raise

    async def stream(self, generator: Callable[..., Iterator[T]], *args: Any) -> AsyncGenerator[T, None]:
        """The items of a blocking generator, produced in a worker thread, as they come. A consumer that
        stops early (a cancelled call) makes the generator stop at its next item."""
        async with self._slot():
            loop = asyncio.get_running_loop()
            items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            cancelled = threading.Event()

            def produce() -> None:
                try:
                    for item in generator(*args):
                        if cancelled.is_set():
                            return
                        loop.call_soon_threadsafe(items.put_nowait, ("item", item))
                except BaseException as error:  # handed to the consumer, raised there
                    loop.call_soon_threadsafe(items.put_nowait, ("error", error))
                else:
                    loop.call_soon_threadsafe(items.put_nowait, ("end", None))

            producing = loop.run_in_executor(None, produce)
            try:
                while True:
                    kind, value = await items.get()
                    if kind == "end":
                        break
                    if kind == "error":
                        raise value
                    yield value
            finally:
                cancelled.set()
                await asyncio.shield(producing)

    def close(self) -> None:
        self._closed = True


class EngineServicer(backend_pb2_grpc.BackendServicer):
    """Health, LoadModel and Status for an engine; subclasses add the engine's model calls, each inside
    `async with self.call(context):`, and say how to load (`load_model`) and whether they have (`loaded`)."""

    def __init__(self, health: health_aio.HealthServicer, queue: WorkQueue, accepts_load_model: bool) -> None:
        self.health = health
        self.queue = queue
        # False for a backend started with its model (a pod, a local-mode process): nobody else who can
        # reach its port may swap the model or make it read another path.
        self._accepts_load_model = accepts_load_model

    # -- what an engine's servicer supplies --
    def load_model(self, request: backend_pb2.ModelOptions) -> str:
        """Load the model (blocking; runs in a worker thread); returns what was loaded, for the log.
        Raises ModelLoadError with the reason."""
        raise NotImplementedError

    @property
    def loaded(self) -> bool:
        raise NotImplementedError

    def memory(self) -> dict[str, int]:
        """Bytes per component for Status (default: the process's resident set)."""
        return {"rss": _resident_bytes()}

    # -- the Backend service's calls every engine answers alike --
    async def Health(self, request: backend_pb2.HealthMessage, context: Any) -> backend_pb2.Reply:  # noqa: ARG002
        return backend_pb2.Reply(message=b"OK")

    async def LoadModel(self, request: backend_pb2.ModelOptions, context: Any) -> backend_pb2.Result:
        if context is not None and not self._accepts_load_model:  # context None: the preload itself
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "this backend serves the model it was started with; LoadModel is refused "
                "(start it with --allow-load-model to allow it)",
            )
        try:  # failures are a Result, not a status code: that is what LocalAI's clients read
            loaded = await asyncio.to_thread(self.load_model, request)
        except ModelLoadError as error:
            log.warning("model load failed", extra={"reason": str(error)})
            return backend_pb2.Result(success=False, message=str(error))
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("model loaded", extra={"model": loaded})
        return backend_pb2.Result(success=True, message=f"loaded {loaded}")

    async def Status(self, request: backend_pb2.HealthMessage, context: Any) -> backend_pb2.StatusResponse:  # noqa: ARG002
        queue = self.queue
        if not self.loaded:
            state = _State.UNINITIALIZED
        else:
            state = _State.BUSY if queue.running >= queue.slots else _State.READY
        memory = self.memory()
        return backend_pb2.StatusResponse(
            state=state,
            memory=backend_pb2.MemoryUsageData(total=sum(memory.values()), breakdown=memory),
            scheduler=backend_pb2.SchedulerState(
                running=queue.running, waiting=queue.waiting, slots=queue.slots, mode="sequential"
            ),
        )

    @asynccontextmanager
    async def call(self, context: Any) -> AsyncIterator[None]:
        """Acknowledge the call (a call lost after this is never replayed), check a model is loaded, and
        end the call with the status code of any EngineError inside."""
        await context.send_initial_metadata(STARTED_METADATA)
        try:
            if not self.loaded:
                raise ModelNotLoadedError("no model is loaded; call LoadModel first")
            yield
        except EngineError as error:
            await context.abort(error.code, str(error))


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class QueueCollector(Collector):
    """The queue's gauges at scrape time, under the names the llama.cpp backend uses too."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = self._queue
        yield GaugeMetricFamily(
            "localmodel_backend_requests_waiting", "Requests waiting for a slot", value=queue.waiting
        )
        yield GaugeMetricFamily(
            "localmodel_backend_requests_running", "Requests being served", value=queue.running
        )
        yield GaugeMetricFamily("localmodel_backend_slots", "Requests served at once", value=queue.slots)


def backend_parser(
    prog: str,
    description: str,
    engine_options: Callable[[argparse._ArgumentGroup], object] | None = None,
) -> argparse.ArgumentParser:
    """The command line every backend takes (backend_command in localmodel/command.py writes it);
    `engine_options` adds an engine's own flags to the model options."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--addr", default="127.0.0.1:50051", help="host:port to listen on (port 0: any free)")
    parser.add_argument("--model", help="model file or directory to load at start (else wait for LoadModel)")
    model = parser.add_argument_group("model options (with --model)")
    model.add_argument(
        "--threads", type=int, default=0, help="CPU threads (default: the CPUs this process may use)"
    )
    model.add_argument("--parallel", type=int, default=1, help="requests served at once (default 1)")
    model.add_argument("--option", action="append", default=[], metavar="KEY:VALUE", help="engine option")
    if engine_options is not None:
        engine_options(model)
    add_serving_flags(parser, DEFAULT_MAX_WAITING)
    return parser


def add_serving_flags(parser: argparse.ArgumentParser, max_waiting: int) -> None:
    """The flags of how a backend serves, whatever its engine (llama.cpp's backend takes them too)."""
    parser.add_argument(
        "--grace-period", type=float, default=30.0, help="seconds to finish requests on SIGTERM"
    )
    parser.add_argument(
        "--allow-load-model",
        action="store_true",
        help="accept LoadModel calls although a model was given with --model (refused by default: "
        "anyone who can reach the port could swap the model)",
    )
    parser.add_argument(
        "--max-waiting",
        type=int,
        default=max_waiting,
        help="requests that may wait for a slot; more get RESOURCE_EXHAUSTED (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (default: none)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")


def preload_options(args: argparse.Namespace) -> backend_pb2.ModelOptions | None:
    """LoadModel's request for `--model`, or None to wait for a LoadModel call."""
    if not args.model:
        return None
    return backend_pb2.ModelOptions(model_file=args.model, threads=args.threads, options=args.option)


# Builds an engine's servicer: (health service, work queue, whether LoadModel calls are accepted).
ServicerFactory = Callable[[health_aio.HealthServicer, WorkQueue, bool], EngineServicer]


async def create_server(
    address: str, make_servicer: ServicerFactory, queue: WorkQueue, accepts_load_model: bool = True
) -> tuple[grpc.aio.Server, int, EngineServicer]:
    """A started server on `address` ("host:0" picks a free port), the port it got, and its servicer."""
    health = await not_serving_health()
    servicer = make_servicer(health, queue, accepts_load_model)
    server, port = await start_grpc_server(address, servicer, health)
    return server, port, servicer


async def not_serving_health() -> health_aio.HealthServicer:
    """The health service of a backend that has no model loaded yet: every service NOT_SERVING."""
    health = health_aio.HealthServicer()
    for service in HEALTH_SERVICES:
        await health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    return health


async def start_grpc_server(
    address: str, servicer: backend_pb2_grpc.BackendServicer, health: health_aio.HealthServicer
) -> tuple[grpc.aio.Server, int]:
    """Any engine's Backend service and its health service, started on `address`, and the port it got."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    backend_pb2_grpc.add_BackendServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port


async def serve(args: argparse.Namespace, make_servicer: ServicerFactory) -> None:
    """Serve until SIGTERM or SIGINT, then finish in-flight requests (up to the grace period) and stop."""
    preload = preload_options(args)
    queue = WorkQueue(max(1, args.parallel), args.max_waiting)
    server, port, servicer = await create_server(
        args.addr, make_servicer, queue, preload is None or args.allow_load_model
    )
    log.info("backend listening", extra={"address": args.addr, "port": port})
    if args.metrics_port:
        REGISTRY.register(QueueCollector(queue))
        start_http_server(args.metrics_port)
        log.info("metrics listening", extra={"port": args.metrics_port})

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    if preload is not None:
        result = await servicer.LoadModel(preload, context=None)
        if not result.success:
            await server.stop(grace=None)
            raise PreloadError(result.message)

    await stopping.wait()
    log.info("stopping: finishing in-flight requests", extra={"grace_seconds": args.grace_period})
    queue.close()
    await servicer.health.enter_graceful_shutdown()  # probes see NOT_SERVING while we drain
    await server.stop(grace=args.grace_period)
    log.info("backend stopped")


def run_backend(
    parser: argparse.ArgumentParser,
    servicer_for: Callable[[argparse.Namespace], ServicerFactory],
    argv: list[str] | None,
) -> int:
    """An engine's `main`: parse, log as every component does, serve; 1 if the model did not load.
    `servicer_for` takes the parsed command line (an engine's own flags) to the servicer's factory."""
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        asyncio.run(serve(args, servicer_for(args)))
    except PreloadError as error:
        log.error("could not load the model", extra={"reason": str(error)})
        return 1
    return 0
