"""Pure ASGI middleware (cheaper per request than Starlette's BaseHTTPMiddleware): body size limit,
request metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localmodel_router import metrics
from localmodel_router.errors import RequestTooLargeError, error_response


class BodyLimit:
    """413 for bodies over the limit: at once when Content-Length says so, else as the bytes arrive.

    Starlette's own limiter answers in plain text from inside its middleware; ours raises the router's
    error, so the client gets OpenAI's error object like for every other error. `path_limits`: other
    limits for some paths (audio uploads).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await error_response(self._error(limit))(scope, receive, send)
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise self._error(limit)
            return message

        await self.app(scope, counting_receive, send)

    @staticmethod
    def _error(limit: int) -> RequestTooLargeError:
        return RequestTooLargeError(f"The request body is larger than {limit} bytes.")


class RequestMetrics:
    """Count and time every request by served model, route and status, until its last byte is sent."""

    def __init__(self, app: ASGIApp, served_name: Callable[[str | None], str]) -> None:
        self.app = app
        self.served_name = served_name  # maps what the client asked for to a served name (bounded labels)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "other")
            model = self.served_name(scope.get("state", {}).get("model"))
            metrics.REQUESTS.labels(model, endpoint, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(model, endpoint).observe(time.perf_counter() - started)
