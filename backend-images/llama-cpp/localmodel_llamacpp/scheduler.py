"""Serve one request at a time, in arrival order, without blocking the event loop.

llama.cpp's context is single-threaded, so every engine call runs on one worker thread; the executor's
FIFO queue gives arrival order. Tokens cross from that thread to the event loop through an asyncio queue.
Continuous batching (several sequences per decode step) will come as another scheduler with this
interface.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from localmodel_llamacpp.engine import Chunk, LlamaEngine, Prompt
from localmodel_llamacpp.options import SamplingConfig

T = TypeVar("T")
_END = object()


class SequentialScheduler:
    mode = "sequential"
    slots = 1

    def __init__(self, engine: LlamaEngine) -> None:
        self.engine = engine
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0

    @property
    def waiting(self) -> int:
        """Requests queued behind the one running."""
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Run a blocking engine call on the worker thread, after the requests queued before it."""
        return await asyncio.wrap_future(self._submit(function, *args))

    async def generate(self, prompt: Prompt, sampling: SamplingConfig) -> AsyncIterator[Chunk]:
        """Stream a generation's chunks; a consumer that leaves early stops it before the next token."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def send(item: object) -> None:
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, item)
            except RuntimeError:  # the event loop closed under us: nobody is listening any more
                cancelled.set()

        def produce() -> None:
            try:
                if not cancelled.is_set():  # the client may have left while this request waited
                    for chunk in self.engine.generate(prompt, sampling, cancelled):
                        send(chunk)
            except Exception as error:  # re-raised on the event loop, in the caller
                send(error)
            finally:
                send(_END)

        job = self._submit(produce)
        job.add_done_callback(lambda done: send(_END) if done.cancelled() else None)  # dropped at shutdown
        try:
            while (item := await chunks.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                assert isinstance(item, Chunk)
                yield item
        finally:
            cancelled.set()

    def close(self) -> None:
        """Stop taking work; queued work is dropped, the running call finishes."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _submit(self, function: Callable[..., T], *args: object) -> Future[T]:
        with self._lock:
            self._waiting += 1

        def job() -> T:
            with self._lock:
                self._waiting -= 1
                self._running += 1
            try:
                return function(*args)
            finally:
                with self._lock:
                    self._running -= 1

        return self._worker.submit(job)
