"""Router errors, each with its HTTP status and OpenAI error type, and the one renderer to OpenAI's shape.

Code raises these; `app.py` installs the handlers that render them (and FastAPI's own validation and
routing errors) as `{"error": {"message", "type", "param", "code"}}`, with `Retry-After` where a retry
can help.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from fastapi.responses import JSONResponse


class RouterError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class BadRequestError(RouterError):
    status, type = 400, "invalid_request_error"


class AuthenticationError(RouterError):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"


class ModelNotFoundError(RouterError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class NotFoundError(RouterError):
    status, type = 404, "invalid_request_error"


class RequestTooLargeError(RouterError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class RateLimitError(RouterError):
    """Too many requests already wait for this model."""

    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class NotSupportedError(RouterError):
    """The model's backend does not offer this call."""

    status, type, code = 501, "invalid_request_error", "not_supported"


class BackendError(RouterError):
    """The backend failed; its details go to the log, not to the client."""

    status, code = 502, "backend_error"


class OverloadedError(RouterError):
    """No backend could take the request in time."""

    status, code = 503, "overloaded"


class BackendTimeoutError(RouterError):
    status, code = 504, "backend_timeout"


def error_response(error: RouterError) -> JSONResponse:
    headers = (
        {"Retry-After": str(max(1, round(error.retry_after)))} if error.retry_after is not None else None
    )
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def sse_error_event(error: RouterError) -> str:
    """The event that ends a stream that failed after it started (OpenAI's SDKs raise on it)."""
    return f"data: {json.dumps(error.body())}\n\n"
