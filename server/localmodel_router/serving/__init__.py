"""What each endpoint family does between parsing the request and rendering the response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from localmodel_router.discovery import Discovery
from localmodel_router.dispatch import Dispatcher
from localmodel_router.errors import BadRequestError
from localmodel_router.protocol.chat import ChatCompletionChunk
from localmodel_router.protocol.common import GenerationRequest, usage
from localmodel_router.protocol.completions import Completion
from localmodel_router.streaming import event

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

    def _check_count(self, param: str, count: int) -> None:
        """At most `max_inputs` prompts or inputs in one request (400 naming `param`)."""
        if count > self._max_inputs:
            message = f"{param}: at most {self._max_inputs} per request, got {count}"
            raise BadRequestError(message, param=param)


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
