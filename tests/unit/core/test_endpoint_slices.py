from __future__ import annotations

from typing import Any

import pytest

from localmodel.endpoint_slices import ready_addresses


def endpoint(address: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [address], "conditions": conditions}


def endpoint_slice(*endpoints: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9090}, {"name": "grpc", "port": 50051}],
        "endpoints": list(endpoints),
        **fields,
    }


def test_ready_and_unknown_endpoints_count_not_ready_and_terminating_ones_do_not() -> None:
    found = endpoint_slice(
        endpoint("10.0.0.1", ready=True),
        endpoint("10.0.0.2"),  # unknown readiness: ready, says the API
        {"addresses": ["10.0.0.3"]},  # no conditions at all
        endpoint("10.0.0.4", ready=False),
        endpoint("10.0.0.5", ready=True, terminating=True),  # a Service publishing not-ready addresses
        endpoint("10.0.0.6", ready=False, serving=True, terminating=True),
        {"addresses": [], "conditions": {"ready": True}},
    )
    assert ready_addresses(found, "grpc") == ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"]


def test_the_port_is_found_by_name() -> None:
    found = endpoint_slice(endpoint("10.0.0.1"))
    assert ready_addresses(found, "metrics") == ["10.0.0.1:9090"]
    assert ready_addresses(found, "http") == []
    assert ready_addresses(found, "http", sole_port_fallback=True) == []  # two ports: which?


@pytest.mark.parametrize("fallback", [False, True])
def test_a_sole_port_of_another_name_is_used_only_when_asked(fallback: bool) -> None:
    found = endpoint_slice(endpoint("10.0.0.1"), ports=[{"port": 8000}])
    assert ready_addresses(found, "grpc", sole_port_fallback=fallback) == (
        ["10.0.0.1:8000"] if fallback else []
    )


def test_ipv6_hosts_are_bracketed_and_one_address_stands_for_its_endpoint() -> None:
    found = endpoint_slice({"addresses": ["fd00::1", "fd00::2"]}, addressType="IPv6")
    assert ready_addresses(found, "grpc") == ["[fd00::1]:50051"]


def test_a_slice_without_ports_or_endpoints_has_no_addresses() -> None:
    assert ready_addresses({}, "grpc") == []
    assert ready_addresses(endpoint_slice(), "grpc") == []
    assert ready_addresses(endpoint_slice(endpoint("10.0.0.1"), ports=None), "grpc") == []
