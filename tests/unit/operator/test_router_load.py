from __future__ import annotations

import json
import logging

import httpx
import pytest

from localmodel_operator.router_load import RouterLoad


def answering(bodies: dict[str, object]) -> httpx.MockTransport:
    """Routers by host: a JSON body, or raw bytes sent as they are."""

    def respond(request: httpx.Request) -> httpx.Response:
        body = bodies[request.url.host]
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(200, content=content)

    return httpx.MockTransport(respond)


def entry(local_model: str | None, active: int, **more: object) -> dict[str, object]:
    return {"model": "m", "localModel": local_model, "active": active, "idleSeconds": 0.0, **more}


async def test_reports_are_summed_per_local_model_and_unknown_fields_ignored() -> None:
    transport = answering(
        {
            "a": {"models": [entry("ai/m", 2), entry(None, 5)]},
            "b": {"models": [entry("ai/m", 1, queued=9), entry("ai/n", 3)], "version": 2},
        }
    )
    load = RouterLoad(["http://a", "http://b"], None, max_age=0, transport=transport)
    try:
        assert await load.read() == {"ai/m": 3.0, "ai/n": 3.0}
    finally:
        await load.close()


@pytest.mark.parametrize("malformed", [b"not json", {"models": [{"localModel": "ai/m"}]}, {"load": []}])
async def test_a_malformed_report_counts_as_no_answer(
    malformed: object, caplog: pytest.LogCaptureFixture
) -> None:
    transport = answering({"good": {"models": [entry("ai/m", 2)]}, "bad": malformed})
    load = RouterLoad(["http://good", "http://bad"], None, max_age=0, transport=transport)
    alone = RouterLoad(["http://bad"], None, max_age=0, transport=transport)
    try:
        with caplog.at_level(logging.WARNING):
            assert await load.read() == {"ai/m": 2.0}
            assert await alone.read() is None  # no router answered: nobody scales on it
        assert "router http://bad: malformed load report" in caplog.text
    finally:
        await load.close()
        await alone.close()
