from __future__ import annotations

from localmodel_router.balancer import LeastOutstanding


def test_least_outstanding_spreads_and_prefers_the_idle_replica() -> None:
    balancer = LeastOutstanding()
    endpoints = ["a:1", "b:1"]
    first, second = balancer.acquire(endpoints), balancer.acquire(endpoints)
    assert first is not None and second is not None
    assert {first.address, second.address} == {"a:1", "b:1"}
    first.release()
    third = balancer.acquire(endpoints)
    assert third is not None and third.address == first.address  # the one with nothing in flight


def test_exclusions_and_exhaustion() -> None:
    balancer = LeastOutstanding()
    lease = balancer.acquire(["a:1", "b:1"], exclude={"a:1"})
    assert lease is not None and lease.address == "b:1"
    assert balancer.acquire(["a:1"], exclude={"a:1"}) is None
    assert balancer.acquire([]) is None


def test_state_is_dropped_when_idle_and_release_is_idempotent() -> None:
    balancer = LeastOutstanding()
    lease = balancer.acquire(["a:1"])
    assert lease is not None and balancer.in_flight("a:1") == 1
    lease.release()
    lease.release()
    assert balancer.in_flight("a:1") == 0
    assert balancer._in_flight == {}  # bounded memory: nothing kept for idle endpoints
