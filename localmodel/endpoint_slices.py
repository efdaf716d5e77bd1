"""Which endpoints of an EndpointSlice take traffic, and at which address. Pure.

One reading for the router (a model's backends) and the operator (the router replicas it reads load
from), both given the slice as the API's camelCase dict.
"""

from __future__ import annotations

from typing import Any


def ready_addresses(
    endpoint_slice: dict[str, Any], port_name: str, *, sole_port_fallback: bool = False
) -> list[str]:
    """`host:port` of each ready, non-terminating endpoint, on the port named `port_name` (or, with
    `sole_port_fallback`, on the slice's only port when none has that name); IPv6 hosts bracketed."""
    ports = [port for port in endpoint_slice.get("ports") or [] if port.get("port")]
    named = [port for port in ports if port.get("name") == port_name]
    if not named and not (sole_port_fallback and len(ports) == 1):
        return []
    port = (named or ports)[0]["port"]
    ipv6 = endpoint_slice.get("addressType") == "IPv6"
    addresses = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # The API says: an unset `ready` means unknown, to be read as ready. A terminating endpoint is
        # leaving (ready may still say True where the Service publishes not-ready addresses).
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        for address in (endpoint.get("addresses") or [])[:1]:  # all addresses of an endpoint are one pod
            addresses.append(f"[{address}]:{port}" if ipv6 else f"{address}:{port}")
    return addresses
