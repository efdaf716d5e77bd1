"""How a backend says it refused a call before starting it, so that the router may send it elsewhere.

gRPC answers UNAVAILABLE both when a server refuses a call and when the connection is lost during one —
and a connection lost during a call may be the request itself crashing the backend. So the router
replays an UNAVAILABLE call on another replica only when it provably did no work: no connection could be
made, or the backend's details start with REFUSED (it is stopping and took nothing).
"""

from __future__ import annotations

REFUSED = "refused before starting"

# What gRPC's own errors say when a call never left the client: no connection could be made.
_NOT_CONNECTED = ("failed to connect", "connection refused", "dns resolution failed", "no address")


def refusal(reason: str) -> str:
    """The details of a backend's refusal of a call it has not started."""
    return f"{REFUSED}: {reason}"


def never_started(details: str) -> bool:
    """Whether an UNAVAILABLE call with these details provably did no work on the backend."""
    lowered = details.lower()
    return details.startswith(REFUSED) or any(phrase in lowered for phrase in _NOT_CONNECTED)
