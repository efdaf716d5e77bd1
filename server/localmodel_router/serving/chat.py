"""Chat completions: translate, dispatch to a backend, shape the answer or the stream of chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from localmodel_router import translate
from localmodel_router.protocol.chat import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ToolCallDelta,
)
from localmodel_router.protocol.common import FinishReason, new_id, now, usage
from localmodel_router.serving import Service, usage_event
from localmodel_router.streaming import event

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2


class ChatService(Service):
    async def complete(self, request: ChatCompletionRequest) -> ChatCompletion:
        route = self._discovery.table().resolve(request.model, "chat")
        options, tool_use = translate.chat_options(request, route)
        reply = await self._dispatcher.predict(route, options)
        text = reply.message.decode("utf-8", "replace")
        calls = translate.tool_calls(text, tool_use) if tool_use else None
        finish: FinishReason = "tool_calls" if calls else translate.finish_reason(reply)
        return ChatCompletion(
            id=new_id("chatcmpl"),
            created=now(),
            model=request.model,
            choices=[
                ChatChoice(
                    message=AssistantMessage(content=None if calls else text, tool_calls=calls),
                    finish_reason=finish,
                )
            ],
            usage=usage(reply.prompt_tokens, reply.tokens),
        )

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[str]:
        """SSE events; the backend stream is open (errors raised here) before the first event is made."""
        route = self._discovery.table().resolve(request.model, "chat")
        options, tool_use = translate.chat_options(request, route)
        return self._events(request, await self._dispatcher.stream(route, options), tool_use)

    async def _events(
        self,
        request: ChatCompletionRequest,
        replies: AsyncIterator[backend_pb2.Reply],
        tool_use: translate.ToolUse | None,
    ) -> AsyncIterator[str]:
        completion_id, created = new_id("chatcmpl"), now()

        def chunk(delta: ChatDelta, finish: FinishReason | None = None) -> str:
            choice = ChatChunkChoice(delta=delta, finish_reason=finish)
            return event(
                ChatCompletionChunk(id=completion_id, created=created, model=request.model, choices=[choice])
            )

        yield chunk(ChatDelta(role="assistant", content=""))
        last, text = None, []
        async for reply in replies:
            last = reply
            piece = reply.message.decode("utf-8", "replace")
            if tool_use is not None:
                text.append(piece)  # a tool call can only be parsed whole
            elif piece:
                yield chunk(ChatDelta(content=piece))

        assert last is not None  # an open stream has at least its first reply
        finish: FinishReason = translate.finish_reason(last)
        if tool_use is not None:
            answer = "".join(text)
            calls = translate.tool_calls(answer, tool_use)
            if calls:
                deltas = [ToolCallDelta(index=i, id=c.id, function=c.function) for i, c in enumerate(calls)]
                yield chunk(ChatDelta(tool_calls=deltas))
                finish = "tool_calls"
            elif answer:
                yield chunk(ChatDelta(content=answer))
        yield chunk(ChatDelta(), finish)
        tokens = usage_event(
            request, ChatCompletionChunk, completion_id, created, last.prompt_tokens, last.tokens
        )
        if tokens is not None:
            yield tokens
