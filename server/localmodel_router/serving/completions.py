"""Text completions: one backend generation per prompt (of its n answers)."""

from __future__ import annotations

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
from localmodel_router.serving import Service, StreamedAnswers, usage_event
from localmodel_router.streaming import event

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2


class CompletionService(Service):
    async def complete(self, request: CompletionRequest) -> Completion:
        route = self._discovery.table().resolve(request.model, "completion")
        options = self._options(request, route)
        n, wanted = request.n, request.logprobs is not None
        # Choice p * n + i is prompt p's answer i, as OpenAI orders them.
        answers = await self._answers(route, options, n)
        choices = [
            CompletionChoice(
                index=p * n + i,
                text=(o.prompt if request.echo else "") + r.message.decode("utf-8", "replace"),
                finish_reason=translate.finish_reason(r),
                logprobs=CompletionLogprobs.of(_entries(r, request.echo)) if wanted else None,
            )
            for p, (o, replies) in enumerate(zip(options, answers, strict=True))
            for i, r in enumerate(replies)
        ]
        return Completion(
            id=new_id("cmpl"),
            created=now(),
            model=request.model,
            choices=choices,
            # Each prompt counted once, however many answers it gets.
            usage=usage(
                sum(replies[0].prompt_tokens for replies in answers),
                sum(r.tokens for replies in answers for r in replies),
            ),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        """SSE events for each prompt in turn (its n answers interleaved); the first backend stream is
        open before any event."""
        route = self._discovery.table().resolve(request.model, "completion")
        options = self._options(request, route)
        first = await self._answer_stream(route, options[0], request.n)
        return self._events(request, route, options, first)

    def _options(self, request: CompletionRequest, route: ModelRoute) -> list[backend_pb2.PredictOptions]:
        """One backend request per prompt, their answers' number checked before any is translated."""
        prompts = translate.completion_prompts(request)
        self._check_count("prompt", len(prompts) * request.n)
        return [translate.completion_options(request, prompt, route) for prompt in prompts]

    async def _events(
        self,
        request: CompletionRequest,
        route: ModelRoute,
        options: list[backend_pb2.PredictOptions],
        first_replies: AsyncIterator[backend_pb2.Reply],
    ) -> AsyncIterator[str]:
        completion_id, created, n = new_id("cmpl"), now(), request.n
        prompt_tokens = completion_tokens = 0

        def chunk(
            index: int,
            text: str,
            finish: FinishReason | None = None,
            logprobs: CompletionLogprobs | None = None,
        ) -> str:
            choice = CompletionChoice(index=index, text=text, finish_reason=finish, logprobs=logprobs)
            return event(Completion(id=completion_id, created=created, model=request.model, choices=[choice]))

        for p, prompt_options in enumerate(options):
            replies = first_replies if p == 0 else await self._answer_stream(route, prompt_options, n)
            answers = StreamedAnswers(n)
            offsets: dict[int, int] = {}
            async for reply in replies:
                index = p * n + reply.index  # choice p * n + i is prompt p's answer i
                echo = answers.see(reply) and request.echo  # the prompt goes first, with the first reply
                if reply.message or reply.logprobs or echo:
                    text = (prompt_options.prompt if echo else "") + reply.message.decode("utf-8", "replace")
                    logprobs = None
                    if request.logprobs is not None:
                        logprobs = CompletionLogprobs.of(_entries(reply, echo), offsets.get(index, 0))
                    yield chunk(index, text, logprobs=logprobs)
                    offsets[index] = offsets.get(index, 0) + len(text)
                if reply.finish_reason:
                    yield chunk(index, "", translate.finish_reason(reply))
            for answer in answers.unended():
                yield chunk(p * n + answer, "", translate.finish_reason(answers.last[answer]))
            prompt_tokens += answers.prompt_tokens  # each prompt counted once, however many answers
            completion_tokens += answers.completion_tokens
        tokens = usage_event(request, Completion, completion_id, created, prompt_tokens, completion_tokens)
        if tokens is not None:
            yield tokens


def _entries(reply: backend_pb2.Reply, echo: bool) -> list[TokenLogprob]:
    """A reply's token log probabilities, after its prompt's when the prompt is echoed."""
    prompt = translate.token_logprobs(reply, prompt=True) if echo else []
    return [*prompt, *translate.token_logprobs(reply)]
