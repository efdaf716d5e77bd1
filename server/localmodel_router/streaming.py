"""Server-sent events as OpenAI streams them: `data: {json}` events, then `data: [DONE]`.

A failure after the stream started cannot change the HTTP status any more; it ends the stream with an
error event (OpenAI's SDKs raise on it) and [DONE], so a client never hangs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from localmodel_router.errors import BackendError, RouterError, sse_error_event

log = logging.getLogger(__name__)

DONE = "data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # proxies must not buffer tokens


def event(payload: BaseModel) -> str:
    return f"data: {payload.model_dump_json()}\n\n"


async def _ended_properly(events: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for item in events:
            yield item
    except RouterError as error:
        yield sse_error_event(error)
    except Exception:
        log.exception("stream failed")
        yield sse_error_event(BackendError("the stream failed"))
    yield DONE


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(_ended_properly(events), media_type="text/event-stream", headers=SSE_HEADERS)
