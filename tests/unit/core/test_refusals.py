"""Which UNAVAILABLE answers prove that a call did no work (and may be replayed elsewhere)."""

from __future__ import annotations

import pytest

from localmodel.refusals import never_started, refusal


@pytest.mark.parametrize(
    "details",
    [
        refusal("the backend is stopping"),
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused",
        "DNS resolution failed for backend-0.svc:50051",
    ],
)
def test_refusals_and_calls_that_never_connected_did_no_work(details: str) -> None:
    assert never_started(details)


@pytest.mark.parametrize(
    "details", ["Socket closed", "recvmsg:Connection reset by peer", "", "the backend is stopping"]
)
def test_a_connection_lost_during_a_call_may_have_done_work(details: str) -> None:
    # The last one: a refusal must say so with the contract's words, not merely sound like one.
    assert not never_started(details)
