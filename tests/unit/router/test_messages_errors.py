"""The Messages route's errors and stream framing, on a real FastAPI app with the route's own class."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.testclient import TestClient

from localmodel_router.auth import ApiKeys
from localmodel_router.errors import (
    AuthenticationError,
    BackendError,
    ModelNotFoundError,
    OverloadedError,
    RateLimitError,
    RouterError,
)
from localmodel_router.messages_errors import MessagesRoute, error_body, error_type
from localmodel_router.messages_streaming import event, open_stream
from localmodel_router.protocol.messages import MessagesRequest, MessageStop


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (AuthenticationError("no"), "authentication_error"),
        (ModelNotFoundError("no"), "not_found_error"),
        (RateLimitError("no"), "rate_limit_error"),
        (OverloadedError("no"), "overloaded_error"),
        (BackendError("no"), "api_error"),
        (RouterError("no"), "api_error"),
    ],
)
def test_router_errors_get_anthropics_types(error: RouterError, kind: str) -> None:
    assert error_type(error.status) == kind
    assert error_body(error).model_dump() == {"type": "error", "error": {"type": kind, "message": "no"}}


def app_raising(error: Exception) -> TestClient:
    router = APIRouter(route_class=MessagesRoute)

    @router.post("/v1/messages")
    async def create(body: MessagesRequest) -> None:  # noqa: ARG001
        raise error  # after the body parsed: validation still answers first

    app = FastAPI()
    app.include_router(router)
    return TestClient(app, raise_server_exceptions=False)


BODY = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}


def test_raised_errors_leave_in_anthropics_shape_with_their_status() -> None:
    reply = app_raising(OverloadedError("busy", retry_after=2.4)).post("/v1/messages", json=BODY)
    assert reply.status_code == 503 and reply.headers["retry-after"] == "2"
    assert reply.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}


def test_validation_errors_are_400s_naming_the_field() -> None:
    reply = app_raising(RuntimeError()).post("/v1/messages", json={"model": "m", "messages": []})
    assert reply.status_code == 400
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(("max_tokens", "messages"))


def test_unexpected_errors_are_api_errors_without_details() -> None:
    reply = app_raising(RuntimeError("secret detail")).post("/v1/messages", json=BODY)
    assert reply.status_code == 500 and reply.json()["error"]["type"] == "api_error"
    assert "secret" not in reply.text


def test_events_are_named_by_their_type() -> None:
    framed = event(MessageStop())
    assert framed.startswith("event: message_stop\ndata: ") and framed.endswith("\n\n")
    assert json.loads(framed.split("data: ", 1)[1]) == {"type": "message_stop"}


def test_a_stream_that_fails_after_it_started_ends_with_an_error_event() -> None:
    async def failing() -> AsyncIterator[str]:
        yield event(MessageStop())
        raise BackendError("the backend went away")

    async def opened() -> AsyncIterator[str]:
        return failing()

    router = APIRouter(route_class=MessagesRoute)

    @router.post("/v1/messages")
    async def create(request: Request) -> Response:
        return await open_stream(request, opened(), keepalive=5)

    app = FastAPI()
    app.include_router(router)
    sent = TestClient(app).post("/v1/messages").text.split("\n\n")
    assert sent[0].startswith("event: message_stop")
    assert sent[1].startswith("event: error\n") and sent[2:] == [""]
    assert json.loads(sent[1].split("data: ", 1)[1])["error"] == {
        "type": "api_error",
        "message": "the backend went away",
    }


def test_x_api_key_is_taken_where_the_route_passes_it() -> None:
    keys = ApiKeys(["s3cret"])
    keys.check(None, "s3cret")
    keys.check("Bearer s3cret", None)
    with pytest.raises(AuthenticationError):
        keys.check(None, "wrong")
    with pytest.raises(AuthenticationError):
        keys.check("Bearer s3cret", "wrong")  # x-api-key, when sent, is the key
