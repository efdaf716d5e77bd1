"""Choosing a replica: least outstanding requests, and leases that count them.

State is one counter per endpoint with requests in flight, dropped at zero, so memory is bounded by the
endpoints in use.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass
class Lease:
    """An endpoint taken for one request; release it when the request ends."""

    address: str
    _balancer: LeastOutstanding
    _released: bool = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._balancer._done(self.address)


class LeastOutstanding:
    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}
        self._turn = itertools.count()  # rotates the start so ties spread over replicas

    def acquire(self, endpoints: Sequence[str], exclude: Collection[str] = ()) -> Lease | None:
        """Lease the endpoint with the fewest requests in flight, skipping `exclude`; None if none is left."""
        candidates = [e for e in endpoints if e not in exclude]
        if not candidates:
            return None
        start = next(self._turn) % len(candidates)
        rotated = candidates[start:] + candidates[:start]
        address = min(rotated, key=lambda e: self._in_flight.get(e, 0))
        self._in_flight[address] = self._in_flight.get(address, 0) + 1
        return Lease(address, self)

    def in_flight(self, address: str) -> int:
        return self._in_flight.get(address, 0)

    def _done(self, address: str) -> None:
        left = self._in_flight.get(address, 0) - 1
        if left > 0:
            self._in_flight[address] = left
        else:
            self._in_flight.pop(address, None)
