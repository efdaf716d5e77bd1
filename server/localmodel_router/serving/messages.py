"""Anthropic's Messages API over the chat path: the same backend request and dispatcher calls as a chat
completion, answered as a message or as Anthropic's stream of events; and the token count of its prompt,
which the backend renders and tokenizes as it would for generation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from localmodel_router import translate, translate_messages
from localmodel_router.messages_streaming import event
from localmodel_router.protocol.messages import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    CountTokensRequest,
    InputJsonDelta,
    Message,
    MessageDelta,
    MessagesRequest,
    MessageStart,
    MessageStop,
    MessageTokensCount,
    MessageUsage,
    Ping,
    TextBlock,
    TextDelta,
    ToolUseBlock,
)
from localmodel_router.serving import Service

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2


class MessagesService(Service):
    async def create(self, request: MessagesRequest) -> Message:
        route = self._discovery.table().resolve(request.model, "chat")
        options, tool_use = translate_messages.messages_options(request, route)
        reply = await self._dispatcher.predict(route, options)
        blocks = translate_messages.answer_blocks(reply.message.decode("utf-8", "replace"), tool_use)
        stop = translate_messages.stop(reply, blocks)
        return Message(
            id=translate_messages.message_id(),
            model=request.model,
            content=blocks,
            stop_reason=stop.stop_reason,
            stop_sequence=stop.stop_sequence,
            usage=_usage(reply),
        )

    async def stream(self, request: MessagesRequest) -> AsyncIterator[str]:
        """SSE events; the backend stream is open (errors raised here) before the first event is made."""
        route = self._discovery.table().resolve(request.model, "chat")
        options, tool_use = translate_messages.messages_options(request, route)
        return _events(request, await self._dispatcher.stream(route, options), tool_use)

    async def count_tokens(self, request: CountTokensRequest) -> MessageTokensCount:
        """The tokens of the prompt `create` would send for the same request (its `usage.input_tokens`)."""
        route = self._discovery.table().resolve(request.model, "chat")
        options = translate_messages.count_options(request, route)
        result = await self._dispatcher.unary(route, lambda stub, t: stub.TokenizeString(options, timeout=t))
        return MessageTokensCount(input_tokens=len(result.tokens))


async def _events(
    request: MessagesRequest,
    replies: AsyncIterator[backend_pb2.Reply],
    tool_use: translate.ToolUse | None,
) -> AsyncIterator[str]:
    last: backend_pb2.Reply | None = None
    held: list[str] = []
    async for reply in replies:
        if last is None:
            # The first reply already counts the prompt, so message_start can say how long it was.
            opening = Message(
                id=translate_messages.message_id(),
                model=request.model,
                content=[],
                stop_reason=None,
                usage=MessageUsage(input_tokens=reply.prompt_tokens, output_tokens=0),
            )
            yield event(MessageStart(message=opening))
            if tool_use is None:
                yield event(ContentBlockStart(index=0, content_block=TextBlock(text="")))
            yield event(Ping())
        last = reply
        piece = reply.message.decode("utf-8", "replace")
        if tool_use is not None:
            held.append(piece)  # a tool call can only be parsed whole
        elif piece:
            yield event(ContentBlockDelta(index=0, delta=TextDelta(text=piece)))
    assert last is not None  # an open stream has at least its first reply
    if tool_use is None:
        blocks: list[TextBlock | ToolUseBlock] = []  # streamed already; no tool call among them
        yield event(ContentBlockStop(index=0))
    else:
        blocks = translate_messages.answer_blocks("".join(held), tool_use)
        for index, block in enumerate(blocks):
            for item in _whole_block(index, block):
                yield item
    yield event(MessageDelta(delta=translate_messages.stop(last, blocks), usage=_usage(last)))
    yield event(MessageStop())


def _whole_block(index: int, block: TextBlock | ToolUseBlock) -> list[str]:
    """A block known whole, as start, one delta and stop (a tool call's input as one JSON piece)."""
    if isinstance(block, ToolUseBlock):
        start: TextBlock | ToolUseBlock = ToolUseBlock(id=block.id, name=block.name, input={})
        delta: TextDelta | InputJsonDelta = InputJsonDelta(partial_json=json.dumps(block.input))
    else:
        start, delta = TextBlock(text=""), TextDelta(text=block.text)
    return [
        event(ContentBlockStart(index=index, content_block=start)),
        event(ContentBlockDelta(index=index, delta=delta)),
        event(ContentBlockStop(index=index)),
    ]


def _usage(reply: backend_pb2.Reply) -> MessageUsage:
    return MessageUsage(input_tokens=reply.prompt_tokens, output_tokens=reply.tokens)
