"""The scheduler: engine calls on one worker thread, generations placed into the slots of decode lanes.

The worker thread runs the calls that come in (load, tokenize, embed) and places waiting generations:
it tokenizes each one and hands it to the lane (lane.py) with a free slot that can reuse most of its
prompt, else the one with the most free slots. Each lane steps its own batch decoder (decoder.py) on its
own thread. Tokens cross to the event loop through an asyncio queue per request.

A request for n answers (`SamplingConfig.n`) takes as many free slots of one lane as it can, the lane
with the most free (there its prompt is prefilled once and copied to the others: decoder.py); the
answers left over go back to the head of the queue and take the next free slots, in another lane or
as slots come free. Placed in another lane at once, they prefill the prompt there once more; placed
as slots come free, they find it whole in the slot an earlier answer left (or in the host store,
prompt_store.py) and decode none of it again.

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

from localmodel.refusals import refusal
from localmodel_llamacpp.decoder import BatchDecoder, Request, default_slots
from localmodel_llamacpp.engine import BusyError, Chunk, LlamaEngine, Prompt, StoppingError
from localmodel_llamacpp.lane import Lane, default_lanes, split, wide_steps
from localmodel_llamacpp.options import LoadConfig, SamplingConfig
from localmodel_llamacpp.prompt_store import PromptStore

log = logging.getLogger(__name__)
T = TypeVar("T")
_END = object()
# The Llama object's own context is used only for the sequential path; with the batch decoder it needs
# no more than this (tokenizing and chat templates use the model, not the context).
_IDLE_CONTEXT = 512
# Generations that may wait for a slot; more are refused (429 at the router) instead of queueing without
# bound. The router's own queue (max_waiting_per_model) is in front of this one.
DEFAULT_MAX_WAITING = 256


class BatchingScheduler:
    def __init__(self, engine: LlamaEngine, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.engine = engine
        self.max_waiting = max_waiting
        self.mode = "sequential"
        self.slots = 1
        self.lanes: list[Lane] = []
        self._calls: deque[Callable[[], None]] = deque()
        self._waiting: deque[Request] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._calls_running = 0
        # Counted outside today's lanes: by lanes stopped since (a model loaded again), and prompt
        # tokens by the sequential path.
        self._prompt_tokens_before = 0
        self._prompts_restored_before = 0
        self._wide = wide_steps()
        self._worker = threading.Thread(target=self._work, name="llama", daemon=True)
        self._worker.start()

    # --- figures for Status, GetMetrics and Prometheus ---

    @property
    def waiting(self) -> int:
        """Requests queued for a slot (or, sequential, behind the one running)."""
        return len(self._waiting) + len(self._calls)

    @property
    def running(self) -> int:
        """Sequences being decoded (a request for n answers runs as up to n), or placed to be."""
        with self._wake:  # lanes move requests from inbox to slots under this lock
            return sum(lane.decoder.active + lane.placed for lane in self.lanes) + self._calls_running

    @property
    def prompt_tokens_decoded(self) -> int:
        """Prompt tokens prefilled since start: a reused prefix, and the copies of a prompt that several
        answers share, are not."""
        lanes = sum(lane.decoder.prompt_tokens_decoded for lane in self.lanes)
        return self._prompt_tokens_before + lanes

    @property
    def prompts_restored(self) -> int:
        """Prompts restored from host memory into a slot since start (prompt_store.py)."""
        return self._prompts_restored_before + sum(lane.decoder.prompts_restored for lane in self.lanes)

    def kv_usage(self) -> float:
        """Share of all lanes' KV cells held by running sequences."""
        cells = [lane.decoder.kv_cells() for lane in self.lanes]
        total = sum(all_cells for _, all_cells in cells)
        return sum(used for used, _ in cells) / total if total else 0.0

    def slot_speeds(self) -> list[float]:
        """Tokens/s of each slot's current (or last) generation."""
        return [slot.tokens_per_second for lane in self.lanes for slot in lane.decoder.slots]

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
        """Stream a generation's chunks (of its `n` answers, interleaved as decoded, each tagged with its
        index and each answer's last with its finish reason); a consumer that leaves early stops them
        before their next token."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def send(item: object) -> None:
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, item)
            except RuntimeError:  # the event loop closed under us: nobody is listening any more
                cancelled.set()

        request = Request(prompt, sampling, send, cancelled, answers=range(sampling.n))
        with self._wake:
            if self._closing:
                raise StoppingError(refusal("the backend is stopping"))
            if self.waiting >= self.max_waiting:
                raise BusyError(f"{self.waiting} requests are waiting for a slot already; retry later")
            if self.lanes:
                self._waiting.append(request)
            else:
                self._calls.append(lambda: self._generate_alone(request))
            self._wake.notify_all()
        try:
            unfinished = sampling.n
            while True:
                item = await chunks.get()
                if isinstance(item, Exception):
                    raise item
                assert isinstance(item, Chunk)
                yield item
                if item.finish_reason is not None:
                    unfinished -= 1
                    if not unfinished:
                        return
        finally:
            cancelled.set()
            with self._wake:
                self._wake.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking work; what waits is dropped. Returns once the running steps have finished and the
        lanes' contexts are freed: a lane still decoding while the process frees the model would crash."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._worker.join(timeout)
        self._wide.shutdown(wait=False)

    # --- the worker thread ---

    def _submit(self, call: Callable[[], None]) -> None:
        with self._wake:
            if self._closing:
                raise StoppingError(refusal("the backend is stopping"))
            self._calls.append(call)
            self._wake.notify_all()

    def _work(self) -> None:
        while True:
            with self._wake:
                while not (self._closing or self._calls or (self._waiting and self._free_slots())):
                    self._wake.wait()
                if self._closing:
                    break
                calls = list(self._calls)
                self._calls.clear()
                self._calls_running = len(calls)
            for call in calls:
                call()
            self._calls_running = 0
            self._place_waiting()
        self._stop_lanes()

    def _free_slots(self) -> int:
        return sum(lane.free_slots for lane in self.lanes)

    def _place_waiting(self) -> None:
        """Hand waiting requests, oldest first, to lanes while any has a free slot; of a request for
        several answers, as many as the lane has free slots for (the rest wait at the head)."""
        while True:
            with self._wake:
                if not (self._waiting and self._free_slots()):
                    return
                request = self._waiting.popleft()
            if request.cancelled.is_set():
                continue
            try:
                admission = self.lanes[0].decoder.prepare(request)  # any lane's: they share the model
            except Exception as error:  # a bug: fail this request, keep serving the others
                log.exception("could not start a generation")
                request.send(error)
                continue
            if admission is None:
                continue
            with self._wake:  # only this thread takes slots, so the one free above is free still
                answers = len(request.answers)
                lane = max(
                    (lane for lane in self.lanes if lane.free_slots),
                    key=lambda lane: (
                        min(lane.free_slots, answers),  # most answers from one prefill first
                        lane.decoder.best_reuse(admission),
                        lane.free_slots,
                        -lane.index,
                    ),
                )
                if lane.free_slots < answers:
                    self._waiting.appendleft(admission.split(lane.free_slots))
                lane.place(admission)

    def _stop_lanes(self) -> None:
        lanes, self.lanes = self.lanes, []
        for lane in lanes:
            lane.stop()
            self._prompt_tokens_before += lane.decoder.prompt_tokens_decoded
            self._prompts_restored_before += lane.decoder.prompts_restored

    def _load(self, config: LoadConfig, slots: int) -> None:
        wanted = slots or default_slots(config.context_size)
        batching = not config.embeddings
        # With batch decoders, the Llama object only tokenizes: a small context of its own is enough, and
        # one thread, so that its warm-up decode leaves no OpenMP thread team on this thread (lane.py).
        # The lanes decoding with the previous model stop once the new one has loaded (a load that fails
        # leaves them serving) and before the previous model is freed.
        idle = replace(config, context_size=min(config.context_size, _IDLE_CONTEXT), threads=1)
        self.engine.load(
            idle if batching else config,
            before_release=self._stop_lanes,
        )
        self.mode, self.slots = "sequential", 1
        if not batching:
            log.info("serving one request at a time: the model is loaded for embeddings")
            return
        lane_count = min(config.lanes or default_lanes(config, wanted), wanted)
        decoders: list[BatchDecoder] = []
        store = PromptStore(config.prompt_cache_ram * 1024 * 1024)  # one for all lanes: it is their memory
        try:
            for lane_slots in split(wanted, lane_count):
                decoders.append(BatchDecoder(self.engine, config, lane_slots, store))
        except RuntimeError as error:
            for decoder in decoders:
                decoder.close()
            log.warning("serving one request at a time: %s", error)
            self.engine.load(config)  # the sequential path needs the full context
            return
        lanes: list[Lane] = []
        lanes += [
            Lane(i, decoder, config.threads, self._wake, lanes, self._wide)
            for i, decoder in enumerate(decoders)
        ]
        for lane in lanes:
            lane.start()
        self.lanes = lanes
        self.mode, self.slots = "batching", wanted
        log.info(
            "continuous batching",
            extra={
                "slots": wanted,
                "lanes": lane_count,
                "context_per_slot": config.context_size,
                "threads": config.threads,
            },
        )

    def _generate_alone(self, request: Request) -> None:
        """The sequential path: the whole generation (its answers one after another, each prefilled),
        on this thread, before anything else."""
        try:
            for index in request.answers:
                if request.cancelled.is_set():
                    return
                sampling = request.sampling.answer(index)
                for chunk in self.engine.generate(request.prompt, sampling, request.cancelled):
                    request.send(replace(chunk, index=index))
                self._prompt_tokens_before += self.engine.last.prompt_tokens
        except Exception as error:  # re-raised on the event loop, in the caller
            request.send(error)
