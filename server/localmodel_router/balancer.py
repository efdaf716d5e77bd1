"""Choosing a replica, and leases that count requests in flight per endpoint.

Two strategies, chosen per model (`spec.loadBalancing`):
- least outstanding: the endpoint with the fewest requests in flight (ties rotate);
- prefix hash: consistent hashing with bounded load. A request's prefix key hashes to a point on a ring
  of endpoint points; the first endpoint clockwise whose load stays within `meanLoadFactor` % of the mean
  takes it. The same conversation returns to the replica holding its KV cache, and a hot prefix spills
  to the next replica instead of overloading one.

Memory is bounded: one counter per endpoint with requests in flight (dropped at zero) and a small LRU of
hash rings (one per endpoint set in use).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from localmodel.spec import BalancingStrategy, LoadBalancing, PrefixHashOptions

MAX_RINGS = 64  # endpoint sets whose rings are kept; a model's set changes only when replicas do


@dataclass
class Lease:
    """An endpoint taken for one request; release it when the request ends."""

    address: str
    _balancer: Balancer
    _released: bool = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._balancer._done(self.address)


class HashRing:
    """`replication` points per endpoint on a 64-bit ring."""

    def __init__(self, endpoints: Sequence[str], replication: int) -> None:
        points = sorted(
            (_hash(f"{endpoint}#{i}"), endpoint) for endpoint in endpoints for i in range(replication)
        )
        self._hashes = [point for point, _ in points]
        self._owners = [owner for _, owner in points]

    def clockwise_from(self, key: str) -> list[str]:
        """Every endpoint once, in ring order from the key's point."""
        start = bisect.bisect(self._hashes, _hash(key))
        return list(dict.fromkeys(self._owners[start:] + self._owners[:start]))


class Balancer:
    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}
        self._turn = itertools.count()  # rotates the start so ties spread over replicas
        self._rings: OrderedDict[tuple[tuple[str, ...], int], HashRing] = OrderedDict()

    def acquire(
        self,
        endpoints: Sequence[str],
        policy: LoadBalancing = LoadBalancing(),  # noqa: B008  (frozen: one shared default is safe)
        key: str | None = None,
        exclude: Collection[str] = (),
    ) -> Lease | None:
        """Lease an endpoint for a request whose prefix key is `key`, skipping `exclude`; None if none
        is left."""
        candidates = [e for e in endpoints if e not in exclude]
        if not candidates:
            return None
        if policy.strategy == BalancingStrategy.PREFIX_HASH and key:
            address = self._by_prefix(endpoints, candidates, key, policy.prefix_hash)
        else:
            address = self._least_outstanding(candidates)
        self._in_flight[address] = self._in_flight.get(address, 0) + 1
        return Lease(address, self)

    def in_flight(self, address: str) -> int:
        return self._in_flight.get(address, 0)

    def _least_outstanding(self, candidates: list[str]) -> str:
        start = next(self._turn) % len(candidates)
        rotated = candidates[start:] + candidates[:start]
        return min(rotated, key=self.in_flight)

    def _by_prefix(
        self, endpoints: Sequence[str], candidates: list[str], key: str, options: PrefixHashOptions
    ) -> str:
        # The ring covers every endpoint (so excluding one for a retry does not move other keys);
        # the load bound counts only the candidates.
        total = sum(self.in_flight(e) for e in candidates)
        bound = math.ceil(options.mean_load_factor / 100 * (total + 1) / len(candidates))
        allowed = set(candidates)
        for address in self._ring(endpoints, options.replication).clockwise_from(key):
            if address in allowed and self.in_flight(address) + 1 <= bound:
                return address
        return self._least_outstanding(candidates)  # unreachable: the least loaded is always within bound

    def _ring(self, endpoints: Sequence[str], replication: int) -> HashRing:
        ring_key = (tuple(sorted(endpoints)), replication)
        ring = self._rings.get(ring_key)
        if ring is None:
            ring = self._rings[ring_key] = HashRing(ring_key[0], replication)
            if len(self._rings) > MAX_RINGS:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(ring_key)
        return ring

    def _done(self, address: str) -> None:
        left = self._in_flight.get(address, 0) - 1
        if left > 0:
            self._in_flight[address] = left
        else:
            self._in_flight.pop(address, None)


def _hash(text: str) -> int:
    # Stable across processes (unlike hash()), so every router replica agrees on the ring.
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
