"""Decode lanes: batch decoders over the one loaded model, each stepped on its own thread.

A lane is a BatchDecoder (its own llama.cpp context and KV cache, the model's weights shared) and the
thread that steps it. With one lane, every running sequence shares each decode step. With several, the
cores are shared out among the lanes that have work, and the lanes decode at the same time.

Why more than one: on a few CPU cores a small model's decode step is bound by arithmetic, not by reading
the weights, so a second sequence in a step costs nearly a second step (SmolLM2-135M on 2 cores: 5.0 ms
for one token, 10.9 ms for two, 16.6 ms for four), while two 1-thread contexts decoding side by side
each keep 5.9 ms a token. Where steps are bound by reading weights (big models, GPUs) one lane is best,
and a lone request always gets every thread.

A lane that has the cores to itself (the only busy one, on more than one thread) steps on one thread of
the process, `wide_steps()`, whichever lane it is. llama.cpp's CPU backend (built with OpenMP, its
default) gives each OS thread that runs a multi-threaded compute a thread team of its own, and once a
process holds more OpenMP threads than CPUs, libgomp stops spinning at barriers (its throttled spin
count) and every barrier of every decode sleeps and wakes instead: one SmolLM2 stream on 2 cores fell
from 74 to 62 tokens/s, for good, once a second lane had run alone. Only one lane can be alone, so the
wide thread never queues. Lanes sharing the cores step on their own threads, side by side: on 2 cores
one thread each, which needs no OpenMP team; with more cores each lane's share still makes a team of
its own (not measured).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from localmodel_llamacpp.decoder import Admission, BatchDecoder
from localmodel_llamacpp.engine import InvalidRequestError
from localmodel_llamacpp.options import LoadConfig

log = logging.getLogger(__name__)

# Measured: SmolLM2-135M Q4_1 (98 MB) and Gemma-3-270M Q4_K_M (253 MB) on 2 cores gain from two lanes.
# Bigger models are left at one lane until someone measures them.
SMALL_MODEL_BYTES = 512 * 1024 * 1024


def default_lanes(config: LoadConfig, slots: int) -> int:
    """Lanes when the load asks for none: two for a small model on a CPU with 2+ threads, else one."""
    if config.gpu_layers != 0 or config.threads < 2 or slots < 2:
        return 1
    return 2 if config.model_path.stat().st_size <= SMALL_MODEL_BYTES else 1


def wide_steps() -> ThreadPoolExecutor:
    """The one thread on which a lane that has the cores to itself steps (see above)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-wide")


def split(total: int, parts: int) -> list[int]:
    """`total` shared as evenly as possible into `parts` whole shares, larger ones first."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


class Lane:
    """One decoder and its thread. `place` and the properties are used under the scheduler's lock
    (`wake`), which the thread also takes to start placed requests and to sleep."""

    def __init__(
        self,
        index: int,
        decoder: BatchDecoder,
        threads: int,
        wake: threading.Condition,
        lanes: list[Lane],
        wide: ThreadPoolExecutor,
    ) -> None:
        self.index = index
        self.decoder = decoder
        self.inbox: deque[Admission] = deque()  # placed by the scheduler, started by this lane's thread
        self._wake = wake
        self._lanes = lanes  # every lane of the model, this one too: threads are shared among the busy
        self._threads = threads
        self._wide = wide
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"llama-lane-{index}", daemon=True)

    @property
    def free_slots(self) -> int:
        return self.decoder.free_slots - self.placed

    @property
    def placed(self) -> int:
        """Slots that the requests placed here and not started yet take (one per answer)."""
        return sum(len(admission.samplers) for admission in self.inbox)

    @property
    def busy(self) -> bool:
        return self.decoder.active > 0 or bool(self.inbox)

    def start(self) -> None:
        self._thread.start()

    def place(self, admission: Admission) -> None:
        self.inbox.append(admission)
        self._wake.notify_all()

    def stop(self) -> None:
        """Finish the running step, then free the context (running requests fail: the model is gone)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join()
        unloaded = InvalidRequestError("the model was unloaded")
        for admission in self.inbox:  # placed here but never started
            admission.close()
            admission.request.send(unloaded)
        self.inbox.clear()
        self.decoder.close()

    def _run(self) -> None:
        decoder = self.decoder
        while True:
            with self._wake:
                while not (self._stopping or self.busy):
                    self._wake.wait()
                if self._stopping:
                    return
                # Under the lock (it takes microseconds), so a request is never counted twice or not at
                # all by free_slots and the scheduler's running figure.
                while self.inbox:
                    self._start(self.inbox.popleft())
                if not decoder.active:  # what was placed had been cancelled
                    continue
                threads = self._share_of_threads()
            decoder.set_threads(threads)
            active = decoder.active
            try:
                if threads > 1 and threads == self._threads:  # alone: see the module's docstring
                    self._wide.submit(decoder.step).result()
                else:
                    decoder.step()
            except Exception as error:  # a bug or llama.cpp failure: fail this lane's batch, keep serving
                log.exception("decode step failed", extra={"lane": self.index})
                decoder.fail_all(error)
            if decoder.active < active:  # a slot came free: the scheduler may place a waiting request
                with self._wake:
                    self._wake.notify_all()

    def _start(self, admission: Admission) -> None:
        try:
            self.decoder.start(admission)
        except Exception as error:  # a bug: fail this request, keep the lane serving the others
            log.exception("could not start a generation", extra={"lane": self.index})
            admission.close()
            admission.request.send(error)

    def _share_of_threads(self) -> int:
        """This (busy) lane's share of the threads among the lanes that have work now."""
        busy = [lane for lane in self._lanes if lane.busy]
        return max(1, split(self._threads, len(busy))[busy.index(self)])
