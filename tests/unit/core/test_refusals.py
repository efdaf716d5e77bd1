"""Which UNAVAILABLE answers prove that a call did no work (and may be replayed elsewhere)."""

from __future__ import annotations

from localmodel.refusals import STARTED_METADATA, never_started, refusal

LOST = "Stream removed (recvmsg:Connection reset by peer (104))"


def test_a_call_the_backend_never_acknowledged_did_no_work() -> None:
    assert never_started(LOST, ())
    assert never_started("failed to connect to all addresses", ())


def test_an_acknowledged_call_that_was_lost_may_have_done_work() -> None:
    assert not never_started(LOST, STARTED_METADATA)
    assert not never_started("Socket closed", [("other-header", "x"), *STARTED_METADATA])


def test_a_refusal_after_the_acknowledgement_did_no_work() -> None:
    assert never_started(refusal("the backend is stopping"), STARTED_METADATA)
    # A refusal says so in the contract's words, not merely something that sounds like one.
    assert not never_started("the backend is stopping", STARTED_METADATA)
