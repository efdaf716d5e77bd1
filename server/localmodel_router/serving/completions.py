"""Text completions: one backend generation per prompt."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from localmodel_router import translate
from localmodel_router.discovery import ModelRoute
from localmodel_router.protocol.common import FinishReason, TokenLogprob, new_id, now, usage
from localmodel_router.protocol.completions import (
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
)
from localmodel_router.serving import Service, usage_event
from localmodel_router.streaming import event

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2


class CompletionService(Service):
    async def complete(self, request: CompletionRequest) -> Completion:
        route = self._discovery.table().resolve(request.model, "completion")
        options = self._options(request, route)
        replies = await self._each([functools.partial(self._dispatcher.predict, route, o) for o in options])
        wanted = request.logprobs is not None
        choices = [
            CompletionChoice(
                index=i,
                text=(o.prompt if request.echo else "") + r.message.decode("utf-8", "replace"),
                finish_reason=translate.finish_reason(r),
                logprobs=CompletionLogprobs.of(_entries(r, request.echo)) if wanted else None,
            )
            for i, (o, r) in enumerate(zip(options, replies, strict=True))
        ]
        prompt_tokens = sum(r.prompt_tokens for r in replies[:: request.n])  # each prompt counted once
        return Completion(
            id=new_id("cmpl"),
            created=now(),
            model=request.model,
            choices=choices,
            usage=usage(prompt_tokens, sum(r.tokens for r in replies)),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        """SSE events for each prompt in turn; the first backend stream is open before any event."""
        route = self._discovery.table().resolve(request.model, "completion")
        options = self._options(request, route)
        return self._events(request, route, options, await self._dispatcher.stream(route, options[0]))

    def _options(self, request: CompletionRequest, route: ModelRoute) -> list[backend_pb2.PredictOptions]:
        """One backend request per prompt and answer (`n` each: choice `p * n + i` is prompt p's answer i,
        as OpenAI orders them), their number checked before any is translated."""
        prompts = translate.completion_prompts(request)
        self._check_count("prompt", len(prompts) * request.n)
        return [
            each
            for prompt in prompts
            for each in translate.per_choice(translate.completion_options(request, prompt, route), request.n)
        ]

    async def _events(
        self,
        request: CompletionRequest,
        route: ModelRoute,
        options: list[backend_pb2.PredictOptions],
        first_replies: AsyncIterator[backend_pb2.Reply],
    ) -> AsyncIterator[str]:
        completion_id, created = new_id("cmpl"), now()
        prompt_tokens = completion_tokens = 0

        def chunk(
            index: int,
            text: str,
            finish: FinishReason | None = None,
            logprobs: CompletionLogprobs | None = None,
        ) -> str:
            choice = CompletionChoice(index=index, text=text, finish_reason=finish, logprobs=logprobs)
            return event(Completion(id=completion_id, created=created, model=request.model, choices=[choice]))

        for index, prompt_options in enumerate(options):
            replies = first_replies if index == 0 else await self._dispatcher.stream(route, prompt_options)
            last, offset = None, 0
            async for reply in replies:
                echo = request.echo and last is None  # the prompt goes first, with the first reply
                last = reply
                if reply.message or reply.logprobs or echo:
                    text = (prompt_options.prompt if echo else "") + reply.message.decode("utf-8", "replace")
                    logprobs = None
                    if request.logprobs is not None:
                        logprobs = CompletionLogprobs.of(_entries(reply, echo), offset)
                    yield chunk(index, text, logprobs=logprobs)
                    offset += len(text)
            assert last is not None
            yield chunk(index, "", translate.finish_reason(last))
            if index % request.n == 0:  # each prompt counted once, however many answers it gets
                prompt_tokens += last.prompt_tokens
            completion_tokens += last.tokens
        tokens = usage_event(request, Completion, completion_id, created, prompt_tokens, completion_tokens)
        if tokens is not None:
            yield tokens


def _entries(reply: backend_pb2.Reply, echo: bool) -> list[TokenLogprob]:
    """A reply's token log probabilities, after its prompt's when the prompt is echoed."""
    prompt = translate.token_logprobs(reply, prompt=True) if echo else []
    return [*prompt, *translate.token_logprobs(reply)]
