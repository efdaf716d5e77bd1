"""When the router may send a failed call to another replica: only when it provably did no work.

gRPC answers UNAVAILABLE both when a call never reached a server and when the connection is lost during
one — and a connection lost during a call may be the request itself crashing the backend (replayed, it
would crash the next replica too). So a backend acknowledges every model call as it starts, with the
initial-metadata header STARTED, and the router replays an UNAVAILABLE call only when

- no acknowledgement came: the backend never took the call (a connection that was already gone, or none);
- or the backend refused it before any work: details starting with REFUSED (it is stopping).

A backend that acknowledges nothing (LocalAI's) gets every UNAVAILABLE call replayed, as gRPC advises.
"""

from __future__ import annotations

from collections.abc import Iterable

STARTED = "localmodel-started"  # initial-metadata key a backend sends as it takes a model call
STARTED_METADATA = ((STARTED, "1"),)
REFUSED = "refused before starting"


def refusal(reason: str) -> str:
    """The details of a backend's refusal of a call it has not started."""
    return f"{REFUSED}: {reason}"


def never_started(details: str, initial_metadata: Iterable[tuple[str, str | bytes]]) -> bool:
    """Whether an UNAVAILABLE call with these details and initial metadata did no work on the backend."""
    acknowledged = any(key == STARTED for key, _ in initial_metadata)
    return not acknowledged or details.startswith(REFUSED)
