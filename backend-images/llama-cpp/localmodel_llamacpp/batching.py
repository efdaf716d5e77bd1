"""The scheduler: every engine call on one worker thread, generations batched across slots.

llama.cpp's context is single-threaded, so one worker thread owns it. Between decode steps it runs the
calls that came in (load, tokenize, embed) and admits waiting generations into free slots; then it runs
one step of the batch decoder (decoder.py) for every sequence at once. Tokens cross from the worker to
the event loop through an asyncio queue per request.

A model that cannot batch — one loaded for embeddings, or one llama.cpp will not give several sequences —
is served one request at a time on the same thread, and Status says `sequential`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

from localmodel_llamacpp.decoder import BatchDecoder, Request, default_slots
from localmodel_llamacpp.engine import Chunk, LlamaEngine, Prompt, StoppingError
from localmodel_llamacpp.options import LoadConfig, SamplingConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
_END = object()
# The Llama object's own context is used only for the sequential path; with the batch decoder it needs
# no more than this (tokenizing and chat templates use the model, not the context).
_IDLE_CONTEXT = 512


class BatchingScheduler:
    def __init__(self, engine: LlamaEngine) -> None:
        self.engine = engine
        self.mode = "sequential"
        self.slots = 1
        self._decoder: BatchDecoder | None = None
        self._calls: deque[Callable[[], None]] = deque()
        self._waiting: deque[Request] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._calls_running = 0
        self._worker = threading.Thread(target=self._work, name="llama", daemon=True)
        self._worker.start()

    # --- figures for Status, GetMetrics and Prometheus ---

    @property
    def waiting(self) -> int:
        """Requests queued for a slot (or, sequential, behind the one running)."""
        return len(self._waiting) + len(self._calls)

    @property
    def running(self) -> int:
        return (self._decoder.active if self._decoder else 0) + self._calls_running

    def kv_usage(self) -> float:
        return self._decoder.kv_usage() if self._decoder else 0.0

    def slot_speeds(self) -> list[float]:
        """Tokens/s of each slot's current (or last) generation."""
        return [slot.tokens_per_second for slot in self._decoder.slots] if self._decoder else []

    # --- the interface the servicer uses ---

    async def load(self, config: LoadConfig, slots: int = 0) -> None:
        """Load a model; batch over `slots` sequences (0: chosen from the context size) where it can."""
        await self.run(self._load, config, slots)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking engine call on the worker thread, between decode steps."""
        future: Future[T] = Future()

        def call() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except BaseException as error:
                    future.set_exception(error)

        self._submit(call)
        return await asyncio.wrap_future(future)

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> AsyncIterator[Chunk]:
        """Stream a generation's chunks; a consumer that leaves early stops it before its next token."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def send(item: object) -> None:
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, item)
            except RuntimeError:  # the event loop closed under us: nobody is listening any more
                cancelled.set()

        request = Request(prompt, sampling, send, cancelled)
        with self._wake:
            if self._closing:
                raise StoppingError("the backend is stopping")
            if self._decoder is not None:
                self._waiting.append(request)
            else:
                self._calls.append(lambda: self._generate_alone(request))
            self._wake.notify()
        try:
            while True:
                item = await chunks.get()
                if isinstance(item, Exception):
                    raise item
                assert isinstance(item, Chunk)
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            cancelled.set()
            with self._wake:
                self._wake.notify()

    def close(self) -> None:
        """Stop taking work; what waits is dropped, the running step finishes."""
        with self._wake:
            self._closing = True
            self._wake.notify()

    # --- the worker thread ---

    def _submit(self, call: Callable[[], None]) -> None:
        with self._wake:
            if self._closing:
                raise StoppingError("the backend is stopping")
            self._calls.append(call)
            self._wake.notify()

    def _work(self) -> None:
        while True:
            with self._wake:
                while not (self._closing or self._calls or self._waiting or self._busy()):
                    self._wake.wait()
                if self._closing:
                    break
                calls = list(self._calls)
                self._calls.clear()
                self._calls_running = len(calls)
            for call in calls:
                call()
            self._calls_running = 0
            decoder = self._decoder
            if decoder is None:
                continue
            with self._wake:
                admitted: list[Request] = []
                while self._waiting and len(admitted) < decoder.free_slots:
                    admitted.append(self._waiting.popleft())
            for request in admitted:
                if not request.cancelled.is_set():
                    try:
                        decoder.admit(request)
                    except Exception as error:  # a bug: fail this request, keep serving the others
                        log.exception("could not start a generation")
                        request.send(error)
            try:
                decoder.step()
            except Exception as error:  # a bug or llama.cpp failure: fail the batch, keep serving
                log.exception("decode step failed")
                decoder.fail_all(error)
        if self._decoder is not None:
            self._decoder.close()

    def _busy(self) -> bool:
        return self._decoder is not None and self._decoder.active > 0

    def _load(self, config: LoadConfig, slots: int) -> None:
        wanted = slots or default_slots(config.context_size)
        batching = not config.embeddings
        # With the batch decoder, the Llama object only tokenizes: a small context of its own is enough.
        self.engine.load(
            replace(config, context_size=min(config.context_size, _IDLE_CONTEXT)) if batching else config
        )
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        self.mode, self.slots = "sequential", 1
        if not batching:
            log.info("serving one request at a time: the model is loaded for embeddings")
            return
        try:
            self._decoder = BatchDecoder(self.engine, config, wanted)
        except RuntimeError as error:
            log.warning("serving one request at a time: %s", error)
            self.engine.load(config)  # the sequential path needs the full context
            return
        self.mode, self.slots = "batching", wanted
        log.info("continuous batching", extra={"slots": wanted, "context_per_slot": config.context_size})

    def _generate_alone(self, request: Request) -> None:
        """The sequential path: the whole generation, on this thread, before anything else."""
        try:
            if not request.cancelled.is_set():
                for chunk in self.engine.generate(request.prompt, request.sampling, request.cancelled):
                    request.send(chunk)
        except Exception as error:  # re-raised on the event loop, in the caller
            request.send(error)
