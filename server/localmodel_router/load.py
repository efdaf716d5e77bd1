"""Requests per model now, and how long each model has been idle: what scale-down decisions read."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ModelLoad:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since = clock()  # a model never asked for has been idle since the router started
        self._active: dict[str, int] = {}
        self._last_end: dict[str, float] = {}

    @contextmanager
    def track(self, model: str) -> Iterator[None]:
        """Count one request (held, waiting or running) for `model` while the block runs."""
        self._active[model] = self._active.get(model, 0) + 1
        try:
            yield
        finally:
            self._active[model] -= 1
            self._last_end[model] = self._clock()

    def active(self, model: str) -> int:
        return self._active.get(model, 0)

    def idle_seconds(self, model: str) -> float:
        """Seconds since the model's last request ended; 0 while one is active."""
        if self.active(model):
            return 0.0
        return self._clock() - self._last_end.get(model, self._since)
