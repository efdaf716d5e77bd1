"""Per-model admission: at most N requests in flight per model, a bounded queue, a bounded wait.

A full queue answers 429 at once (the client should slow down); a wait that runs out answers 503 (the
model cannot keep up); both with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from localmodel_router import metrics
from localmodel_router.errors import OverloadedError, RateLimitError


class _Gate:
    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.waiting = 0


class Admission:
    def __init__(self, max_in_flight: int, max_waiting: int, timeout: float) -> None:
        self._max_in_flight = max_in_flight
        self._max_waiting = max_waiting
        self._timeout = timeout
        self._gates: dict[str, _Gate] = {}  # one per served model name

    def waiting(self, model: str) -> int:
        gate = self._gates.get(model)
        return gate.waiting if gate else 0

    @asynccontextmanager
    async def admit(self, model: str) -> AsyncIterator[None]:
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates[model] = _Gate(self._max_in_flight)
        if gate.slots.locked():
            if gate.waiting >= self._max_waiting:
                raise RateLimitError(
                    f"model '{model}' has {gate.waiting} requests waiting already; retry later", retry_after=1
                )
            gate.waiting += 1
            try:
                with metrics.WAITING.labels(model).track_inprogress():
                    await asyncio.wait_for(gate.slots.acquire(), self._timeout)
            except TimeoutError:
                raise OverloadedError(
                    f"model '{model}' stayed busy for {self._timeout:.0f}s; retry later",
                    retry_after=self._timeout,
                ) from None
            finally:
                gate.waiting -= 1
        else:
            await gate.slots.acquire()
        try:
            yield
        finally:
            gate.slots.release()
