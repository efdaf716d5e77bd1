"""The Responses API over the chat path: the same backend request and dispatcher calls as a chat
completion, answered as a response object or as the Responses stream of named events."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from localmodel_router import responses_translate, translate
from localmodel_router.discovery import ModelRoute
from localmodel_router.errors import BadRequestError
from localmodel_router.protocol.common import now
from localmodel_router.protocol.responses import (
    ArgumentsDeltaEvent,
    ArgumentsDoneEvent,
    ContentPartEvent,
    CreateResponseRequest,
    FunctionCallItem,
    LifecycleEvent,
    OutputItem,
    OutputItemEvent,
    OutputMessage,
    OutputText,
    ResponseObject,
    StreamEvent,
    TextDeltaEvent,
    TextDoneEvent,
)
from localmodel_router.serving import Service

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2

E = TypeVar("E", bound=StreamEvent)


class ResponsesService(Service):
    async def create(self, request: CreateResponseRequest) -> ResponseObject:
        route, options, tool_use = self._translated(request)
        reply = await self._dispatcher.predict(route, options)
        text = reply.message.decode("utf-8", "replace")
        items = responses_translate.output(text, translate.finish_reason(reply), tool_use)
        return responses_translate.response_object(
            request, responses_translate.new_id("resp"), now(), items, (reply.prompt_tokens, reply.tokens)
        )

    async def stream(self, request: CreateResponseRequest) -> AsyncIterator[str]:
        """SSE events; the backend stream is open (errors raised here) before the first event is made."""
        route, options, tool_use = self._translated(request)
        return _events(request, await self._dispatcher.stream(route, options), tool_use)

    def _translated(
        self, request: CreateResponseRequest
    ) -> tuple[ModelRoute, backend_pb2.PredictOptions, translate.ToolUse | None]:
        chat = responses_translate.chat_request(request)
        route = self._discovery.table().resolve(request.model, "chat")
        try:
            options, tool_use = translate.chat_options(chat, route)
        except BadRequestError as error:
            raise responses_translate.renamed(error) from error
        return route, options, tool_use


class _Numbered:
    """Stream events in order: each gets the next `sequence_number` and its type as the SSE event name."""

    def __init__(self) -> None:
        self._numbers = itertools.count()

    def __call__(self, kind: type[E], **fields: Any) -> str:
        payload = kind(sequence_number=next(self._numbers), **fields)
        return f"event: {payload.type}\ndata: {payload.model_dump_json()}\n\n"


async def _events(
    request: CreateResponseRequest,
    replies: AsyncIterator[backend_pb2.Reply],
    tool_use: translate.ToolUse | None,
) -> AsyncIterator[str]:
    emit = _Numbered()
    response_id, created = responses_translate.new_id("resp"), now()
    started = responses_translate.response_object(request, response_id, created, [])
    yield emit(LifecycleEvent, type="response.created", response=started)
    yield emit(LifecycleEvent, type="response.in_progress", response=started)

    last, pieces = None, []
    if tool_use is None:
        message_id = responses_translate.new_id("msg")
        for opening in _message_opened(emit, 0, message_id):
            yield opening
        async for reply in replies:
            last = reply
            piece = reply.message.decode("utf-8", "replace")
            if piece:
                pieces.append(piece)
                yield _text_delta(emit, 0, message_id, piece)
        assert last is not None  # an open stream has at least its first reply
        items: list[OutputItem] = [
            responses_translate.message(message_id, "".join(pieces), translate.finish_reason(last))
        ]
    else:
        async for reply in replies:
            last = reply
            pieces.append(reply.message.decode("utf-8", "replace"))  # a tool call can only be parsed whole
        assert last is not None
        items = responses_translate.output("".join(pieces), translate.finish_reason(last), tool_use)
    for index, item in enumerate(items):
        for done in _item_events(emit, index, item, opened=tool_use is None):
            yield done

    final = responses_translate.response_object(
        request, response_id, created, items, (last.prompt_tokens, last.tokens)
    )
    ended = "response.completed" if final.status == "completed" else "response.incomplete"
    yield emit(LifecycleEvent, type=ended, response=final)


def _message_opened(emit: _Numbered, index: int, item_id: str) -> list[str]:
    opened = OutputMessage(id=item_id, status="in_progress", content=[])
    return [
        emit(OutputItemEvent, type="response.output_item.added", output_index=index, item=opened),
        emit(
            ContentPartEvent,
            type="response.content_part.added",
            item_id=item_id,
            output_index=index,
            content_index=0,
            part=OutputText(text=""),
        ),
    ]


def _text_delta(emit: _Numbered, index: int, item_id: str, piece: str) -> str:
    return emit(TextDeltaEvent, item_id=item_id, output_index=index, content_index=0, delta=piece)


def _item_events(emit: _Numbered, index: int, item: OutputItem, *, opened: bool) -> list[str]:
    """The events that finish `item` (and, unless its text was streamed as it came, start it)."""
    if isinstance(item, FunctionCallItem):
        started = item.model_copy(update={"status": "in_progress", "arguments": ""})
        return [
            emit(OutputItemEvent, type="response.output_item.added", output_index=index, item=started),
            emit(ArgumentsDeltaEvent, item_id=item.id, output_index=index, delta=item.arguments),
            emit(
                ArgumentsDoneEvent,
                item_id=item.id,
                output_index=index,
                name=item.name,
                arguments=item.arguments,
            ),
            emit(OutputItemEvent, type="response.output_item.done", output_index=index, item=item),
        ]
    part = item.content[0]
    events = [] if opened else _message_opened(emit, index, item.id)
    if not opened and part.text:
        events.append(_text_delta(emit, index, item.id, part.text))
    place = {"item_id": item.id, "output_index": index, "content_index": 0}
    return [
        *events,
        emit(TextDoneEvent, **place, text=part.text),
        emit(ContentPartEvent, type="response.content_part.done", **place, part=part),
        emit(OutputItemEvent, type="response.output_item.done", output_index=index, item=item),
    ]
