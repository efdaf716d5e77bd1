"""What each endpoint family does between parsing the request and rendering the response."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from localmodel_router import translate
from localmodel_router.discovery import Discovery, ModelRoute
from localmodel_router.dispatch import Dispatcher
from localmodel_router.errors import BadRequestError
from localmodel_router.protocol.chat import ChatCompletionChunk
from localmodel_router.protocol.common import GenerationRequest, usage
from localmodel_router.protocol.completions import Completion
from localmodel_router.streaming import event

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2

T = TypeVar("T")


class Service:
    """What every endpoint family needs: the routing table's source, the way to reach backends, and the
    bounds on a request of several prompts or inputs."""

    def __init__(
        self, discovery: Discovery, dispatcher: Dispatcher, max_inputs: int = 2048, inputs_at_once: int = 64
    ) -> None:
        self._discovery = discovery
        self._dispatcher = dispatcher
        self._max_inputs = max_inputs
        self._inputs_at_once = inputs_at_once

    async def _each(self, calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        """The backend calls of one request's prompts or inputs, at most `inputs_at_once` in flight (the
        rest wait here, not in the model's queue, where they would crowd out other clients). The first
        failure cancels the others and is raised: nothing keeps running for an answer nobody gets. The
        caller has checked their number (`_check_count`) before translating them."""
        if len(calls) == 1:  # the common request (one prompt, one answer): no task, no gate
            return [await calls[0]()]
        gate = asyncio.Semaphore(self._inputs_at_once)

        async def run(call: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await call()

        tasks = [asyncio.ensure_future(run(call)) for call in calls]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                if task.done() and (error := task.exception()) is not None:
                    raise error
            return [task.result() for task in tasks]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _answers(
        self, route: ModelRoute, prompts: list[backend_pb2.PredictOptions], n: int
    ) -> list[list[backend_pb2.Reply]]:
        """`n` whole answers to each prompt, side by side (bounded by `_each`): one backend stream per
        prompt where the backend shares their prefill (route.shares_prefill), else one Predict each."""
        if n > 1 and route.shares_prefill:
            return await self._each([functools.partial(self._joined_answers, route, o, n) for o in prompts])
        each = [o for options in prompts for o in translate.per_choice(options, n)]
        replies = await self._each([functools.partial(self._dispatcher.predict, route, o) for o in each])
        return [replies[start : start + n] for start in range(0, len(replies), n)]

    async def _joined_answers(
        self, route: ModelRoute, options: backend_pb2.PredictOptions, n: int
    ) -> list[backend_pb2.Reply]:
        options.n = n
        stream = await self._dispatcher.stream(route, options)
        return translate.join_answers([reply async for reply in stream], n)

    async def _answer_stream(
        self, route: ModelRoute, options: backend_pb2.PredictOptions, n: int
    ) -> AsyncIterator[backend_pb2.Reply]:
        """An open stream of `n` answers to one prompt, each reply naming its answer (`index`): the
        backend's own interleaving where it shares their prefill, else one stream per answer in turn.
        Errors before the first reply are raised here."""
        if n == 1 or route.shares_prefill:
            options.n = n if n > 1 else 0
            return await self._dispatcher.stream(route, options)
        each = translate.per_choice(options, n)
        return self._in_turn(route, each, await self._dispatcher.stream(route, each[0]))

    async def _in_turn(
        self,
        route: ModelRoute,
        each: list[backend_pb2.PredictOptions],
        first: AsyncIterator[backend_pb2.Reply],
    ) -> AsyncIterator[backend_pb2.Reply]:
        for index, options in enumerate(each):
            async for reply in first if index == 0 else await self._dispatcher.stream(route, options):
                reply.index = index
                yield reply

    def _check_count(self, param: str, count: int) -> None:
        """At most `max_inputs` prompts or inputs in one request (400 naming `param`)."""
        if count > self._max_inputs:
            message = f"{param}: at most {self._max_inputs} per request, got {count}"
            raise BadRequestError(message, param=param)


class StreamedAnswers:
    """What a stream of interleaved answers (Reply.index) has shown so far: each answer's latest reply,
    and which answers have ended (a reply naming their finish)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.last: dict[int, backend_pb2.Reply] = {}
        self._ended: set[int] = set()

    def see(self, reply: backend_pb2.Reply) -> bool:
        """Note `reply`; True if it is its answer's first."""
        first = reply.index not in self.last
        self.last[reply.index] = reply
        if reply.finish_reason:
            self._ended.add(reply.index)
        return first

    def unended(self) -> list[int]:
        """Once the stream is over: the answers whose backend named no finish (they end with the stream).
        Fewer answers than asked for is the 502 of `translate.check_answers`."""
        translate.check_answers(len(self.last), self.n)
        return sorted(self.last.keys() - self._ended)

    @property
    def prompt_tokens(self) -> int:
        return max(reply.prompt_tokens for reply in self.last.values())  # one prompt for every answer

    @property
    def completion_tokens(self) -> int:
        return sum(reply.tokens for reply in self.last.values())


def usage_event(
    request: GenerationRequest,
    chunk_type: type[ChatCompletionChunk] | type[Completion],
    completion_id: str,
    created: int,
    prompt_tokens: int,
    completion_tokens: int,
) -> str | None:
    """The stream's last event when the client asked for usage (`stream_options.include_usage`): no
    choices, the whole request's tokens; None when it did not ask."""
    if not (request.stream_options and request.stream_options.include_usage):
        return None
    tokens = usage(prompt_tokens, completion_tokens)
    return event(chunk_type(id=completion_id, created=created, model=request.model, choices=[], usage=tokens))
