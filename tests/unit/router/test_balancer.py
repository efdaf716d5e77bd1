from __future__ import annotations

import tracemalloc
from collections import Counter

from localmodel.spec import BalancingStrategy, LoadBalancing
from localmodel.wire import backend_pb2
from localmodel_router.affinity import prefix_key
from localmodel_router.balancer import MAX_RINGS, Balancer


def test_least_outstanding_spreads_and_prefers_the_idle_replica() -> None:
    balancer = Balancer()
    endpoints = ["a:1", "b:1"]
    first, second = balancer.acquire(endpoints), balancer.acquire(endpoints)
    assert first is not None and second is not None
    assert {first.address, second.address} == {"a:1", "b:1"}
    first.release()
    third = balancer.acquire(endpoints)
    assert third is not None and third.address == first.address  # the one with nothing in flight


def test_exclusions_and_exhaustion() -> None:
    balancer = Balancer()
    lease = balancer.acquire(["a:1", "b:1"], exclude={"a:1"})
    assert lease is not None and lease.address == "b:1"
    assert balancer.acquire(["a:1"], exclude={"a:1"}) is None
    assert balancer.acquire([]) is None


def test_state_is_dropped_when_idle_and_release_is_idempotent() -> None:
    balancer = Balancer()
    lease = balancer.acquire(["a:1"])
    assert lease is not None and balancer.in_flight("a:1") == 1
    lease.release()
    lease.release()
    assert balancer.in_flight("a:1") == 0
    assert balancer._in_flight == {}  # bounded memory: nothing kept for idle endpoints


PREFIX = LoadBalancing(strategy=BalancingStrategy.PREFIX_HASH)
REPLICAS = [f"10.0.0.{i}:50051" for i in range(1, 5)]


def _owner(balancer: Balancer, key: str, endpoints: list[str] = REPLICAS) -> str:
    lease = balancer.acquire(endpoints, PREFIX, key)
    assert lease is not None
    lease.release()
    return lease.address


def test_prefix_hash_sends_a_prefix_to_the_same_replica_and_spreads_prefixes() -> None:
    balancer = Balancer()
    owners = {f"conversation {n}": _owner(balancer, f"conversation {n}") for n in range(200)}
    assert all(_owner(balancer, key) == owner for key, owner in owners.items())
    per_replica = Counter(owners.values())
    assert set(per_replica) == set(REPLICAS)
    assert min(per_replica.values()) >= 25  # 256 points per replica: close to 50 each


def test_prefix_hash_agrees_across_balancers_and_endpoint_order() -> None:
    # Every router replica must pick the same backend for a prefix.
    assert _owner(Balancer(), "hello") == _owner(Balancer(), "hello", list(reversed(REPLICAS)))


def test_prefix_hash_moves_few_keys_when_a_replica_goes() -> None:
    balancer = Balancer()
    keys = [f"k{n}" for n in range(400)]
    before = {key: _owner(balancer, key) for key in keys}
    fewer = REPLICAS[:-1]
    after = {key: _owner(balancer, key, fewer) for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert all(before[key] == REPLICAS[-1] for key in moved)  # only the gone replica's keys move


def test_prefix_hash_load_bound_spills_a_hot_prefix_to_the_next_replica() -> None:
    balancer = Balancer()
    home = _owner(balancer, "hot")
    leases = [balancer.acquire(REPLICAS, PREFIX, "hot") for _ in range(8)]
    addresses = Counter(lease.address for lease in leases if lease is not None)
    # Bound: ceil(1.25 * (n + 1) / 4) requests per replica as n grows; never all 8 on one replica.
    assert addresses[home] == 3
    assert len(addresses) >= 3
    assert max(addresses.values()) <= 3


def test_prefix_hash_retry_excludes_the_failed_replica_without_moving_other_keys() -> None:
    balancer = Balancer()
    home = _owner(balancer, "retry me")
    lease = balancer.acquire(REPLICAS, PREFIX, "retry me", exclude={home})
    assert lease is not None and lease.address != home


def test_a_ring_dropped_from_the_bounded_store_is_rebuilt_with_the_same_owners() -> None:
    balancer = Balancer()
    sets = [[f"10.1.{n}.{host}:1" for host in range(1, 5)] for n in range(MAX_RINGS * 2)]
    keys = [f"conversation {n}" for n in range(16)]
    before = [[_owner(balancer, key, endpoints) for key in keys] for endpoints in sets[:4]]
    for endpoints in sets:  # more endpoint sets than are kept: the first ones' rings are dropped
        _owner(balancer, "churn", endpoints)
    after = [[_owner(balancer, key, endpoints) for key in keys] for endpoints in sets[:4]]
    assert after == before  # a replica set seen again routes every conversation home as before
    assert all(len(set(owners)) > 1 for owners in before)  # and the keys do spread


def test_least_outstanding_ignores_the_key() -> None:
    balancer = Balancer()
    held = balancer.acquire(["a:1", "b:1"], LoadBalancing(), "same")
    other = balancer.acquire(["a:1", "b:1"], LoadBalancing(), "same")
    assert held is not None and other is not None and held.address != other.address


def _options(*messages: tuple[str, str], prompt: str = "") -> backend_pb2.PredictOptions:
    return backend_pb2.PredictOptions(
        prompt=prompt, messages=[backend_pb2.Message(role=r, content=c) for r, c in messages]
    )


def test_prefix_key_is_system_prompt_plus_start_of_first_user_message() -> None:
    first_turn = _options(("system", "be brief"), ("user", "tell me about rivers and lakes"))
    later_turn = _options(
        ("system", "be brief"),
        ("user", "tell me about rivers and lakes"),
        ("assistant", "Rivers flow."),
        ("user", "and lakes?"),
    )
    assert prefix_key(first_turn, 10) == prefix_key(later_turn, 10)
    assert prefix_key(first_turn, 10) != prefix_key(_options(("system", "be brief"), ("user", "hello")), 10)
    assert prefix_key(_options(prompt="Once upon a time"), 4) == "Once"


def test_memory_stays_flat_however_many_endpoint_sets_come_and_go() -> None:
    balancer = Balancer()

    def churn(first: int, count: int) -> None:
        for n in range(first, first + count):
            _owner(balancer, "x", [f"10.{n // 250}.{n % 250}.{host}:1" for host in range(1, 5)])

    tracemalloc.start()
    try:
        churn(0, MAX_RINGS * 2)
        settled = tracemalloc.get_traced_memory()[0]
        churn(MAX_RINGS * 2, MAX_RINGS * 4)  # each set's ring is tens of KiB: unbounded, this adds MiBs
        grown = tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, f"{grown} bytes more after {MAX_RINGS * 4} more endpoint sets"
