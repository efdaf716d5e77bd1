"""Errors on the Messages route in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`.

The app's handlers render OpenAI's shape for every path. The Messages route's own class (`MessagesRoute`)
renders what its handler, its dependencies (the API-key check) and its body validation raise before it
reaches them, so that Anthropic's SDKs find the error object they parse and the OpenAI routes keep theirs.
Statuses stay the router's own (Anthropic's SDKs map 4xx/5xx to the same exception classes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from localmodel_router.disconnect import ClientDisconnectedError
from localmodel_router.errors import BadRequestError, RouterError
from localmodel_router.protocol.messages import ErrorBody, ErrorDetail

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    # Anthropic's own status for this is 529; ours stays 503, which its SDKs retry all the same.
    503: "overloaded_error",
}


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(error: RouterError) -> ErrorBody:
    return ErrorBody(error=ErrorDetail(type=error_type(error.status), message=error.message))


def error_response(error: RouterError) -> JSONResponse:
    headers = (
        {"Retry-After": str(max(1, round(error.retry_after)))} if error.retry_after is not None else None
    )
    return JSONResponse(error_body(error).model_dump(), status_code=error.status, headers=headers)


def _invalid(error: RequestValidationError) -> BadRequestError:
    # Worded as app.py words it for the OpenAI routes: the first problem, named by its field.
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(part) for part in first["loc"] if part != "body") or None
    return BadRequestError(f"{param}: {first['msg']}" if param else str(first["msg"]), param=param)


class MessagesRoute(APIRoute):
    """An APIRoute whose errors leave in Anthropic's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_anthropic_shape(request: Request) -> Response:
            try:
                return await handle(request)
            except RouterError as error:
                return error_response(error)
            except RequestValidationError as error:
                return error_response(_invalid(error))
            except HTTPException as error:
                detail = ErrorDetail(type=error_type(error.status_code), message=str(error.detail))
                body = ErrorBody(error=detail)
                return JSONResponse(body.model_dump(), status_code=error.status_code, headers=error.headers)
            except ClientDisconnectedError:
                raise  # nobody reads the answer: the app's handler ends it
            except Exception:
                log.exception("unexpected error")
                return error_response(RouterError("The router failed unexpectedly; see its log."))

        return handle_in_anthropic_shape
