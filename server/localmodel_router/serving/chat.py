"""Chat completions: translate, dispatch to a backend, shape the answer or the stream of chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
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
    ChoiceLogprobs,
    ToolCallDelta,
)
from localmodel_router.protocol.common import FinishReason, new_id, now, usage
from localmodel_router.serving import Service, StreamedAnswers, usage_event
from localmodel_router.streaming import event

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2


class ChatService(Service):
    async def complete(self, request: ChatCompletionRequest) -> ChatCompletion:
        route = self._discovery.table().resolve(request.model, "chat")
        options, tool_use = translate.chat_options(request, route)
        self._check_count("n", request.n)
        (replies,) = await self._answers(route, [options], request.n)
        return ChatCompletion(
            id=new_id("chatcmpl"),
            created=now(),
            model=request.model,
            choices=[
                _choice(index, reply, tool_use, request.logprobs) for index, reply in enumerate(replies)
            ],
            # Every answer reads the same prompt: counted once, as OpenAI counts it.
            usage=usage(replies[0].prompt_tokens, sum(reply.tokens for reply in replies)),
        )

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[str]:
        """SSE events; the backend stream is open (errors raised here) before the first event is made.
        With n > 1 the answers' chunks interleave as they are decoded, each naming its choice's index."""
        route = self._discovery.table().resolve(request.model, "chat")
        options, tool_use = translate.chat_options(request, route)
        self._check_count("n", request.n)
        return self._events(request, await self._answer_stream(route, options, request.n), tool_use)

    async def _events(
        self,
        request: ChatCompletionRequest,
        replies: AsyncIterator[backend_pb2.Reply],
        tool_use: translate.ToolUse | None,
    ) -> AsyncIterator[str]:
        completion_id, created = new_id("chatcmpl"), now()
        answers = StreamedAnswers(request.n)
        texts: dict[int, list[str]] = {}  # with tools, each answer's text: a tool call is parsed whole

        def chunk(
            index: int,
            delta: ChatDelta,
            finish: FinishReason | None = None,
            logprobs: ChoiceLogprobs | None = None,
        ) -> str:
            choice = ChatChunkChoice(index=index, delta=delta, finish_reason=finish, logprobs=logprobs)
            return event(
                ChatCompletionChunk(id=completion_id, created=created, model=request.model, choices=[choice])
            )

        def ending(index: int) -> Iterator[str]:
            finish: FinishReason = translate.finish_reason(answers.last[index])
            if tool_use is not None:
                answer = "".join(texts[index])
                calls = translate.tool_calls(answer, tool_use)
                if calls:
                    deltas = [
                        ToolCallDelta(index=i, id=c.id, function=c.function) for i, c in enumerate(calls)
                    ]
                    yield chunk(index, ChatDelta(tool_calls=deltas))
                    finish = "tool_calls"
                elif answer:
                    yield chunk(index, ChatDelta(content=answer))
            yield chunk(index, ChatDelta(), finish)

        async for reply in replies:
            index = reply.index
            if answers.see(reply):
                yield chunk(index, ChatDelta(role="assistant", content=""))
            piece = reply.message.decode("utf-8", "replace")
            if tool_use is not None:
                texts.setdefault(index, []).append(piece)
            elif piece or reply.logprobs:
                logprobs = (
                    ChoiceLogprobs(content=translate.token_logprobs(reply)) if request.logprobs else None
                )
                yield chunk(index, ChatDelta(content=piece), logprobs=logprobs)
            if reply.finish_reason:
                for text in ending(index):
                    yield text
        for index in answers.unended():
            for text in ending(index):
                yield text
        tokens = usage_event(
            request,
            ChatCompletionChunk,
            completion_id,
            created,
            answers.prompt_tokens,
            answers.completion_tokens,
        )
        if tokens is not None:
            yield tokens


def _choice(
    index: int, reply: backend_pb2.Reply, tool_use: translate.ToolUse | None, logprobs: bool
) -> ChatChoice:
    text = reply.message.decode("utf-8", "replace")
    calls = translate.tool_calls(text, tool_use) if tool_use else None
    finish: FinishReason = "tool_calls" if calls else translate.finish_reason(reply)
    return ChatChoice(
        logprobs=ChoiceLogprobs(content=translate.token_logprobs(reply)) if logprobs else None,
        index=index,
        message=AssistantMessage(content=None if calls else text, tool_calls=calls),
        finish_reason=finish,
    )
