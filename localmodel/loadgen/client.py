"""Streamed chat requests to any OpenAI-compatible server through the official AsyncOpenAI client."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import openai
from openai import Omit
from openai.types.chat import ChatCompletionStreamOptionsParam, ChatCompletionUserMessageParam

from localmodel.loadgen.stats import RequestResult, StreamTally

# A server that refuses the field gets the same request without it (and its chunks are counted).
_USAGE: ChatCompletionStreamOptionsParam = {"include_usage": True}


def api_base(url: str) -> str:
    """The SDK's base_url for what a user typed: a bare `http://host:port` gets `/v1`; a URL with a path
    (`…/v1`, `…/openai/v1`) is taken as it is."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r}: expected an http:// or https:// URL")
    return url if parts.path else f"{url}/v1"


def describe(error: BaseException) -> str:
    """One line for the report: the HTTP status and the server's message where there is one."""
    if isinstance(error, openai.APIStatusError):
        body = error.body  # OpenAI's error object, where the server sent one
        message = body.get("message") if isinstance(body, dict) else None
        return f"HTTP {error.status_code}: {message or error.message}"
    return f"{type(error).__name__}: {error}"


class ChatTarget:
    """Sends one user message per request, streamed, temperature and max_tokens fixed."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        max_tokens: int,
        temperature: float = 0.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self._client = client
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.extra_body = extra_body
        self.ask_usage = True

    async def send(self, prompt: str) -> RequestResult:
        result = await self._send(prompt)
        if self.ask_usage and result.error and "stream_options" in result.error:
            self.ask_usage = False
            result = await self._send(prompt)
        return result

    async def _send(self, prompt: str) -> RequestResult:
        usage: ChatCompletionStreamOptionsParam | Omit = _USAGE if self.ask_usage else openai.omit
        tally = StreamTally(started=time.perf_counter())
        try:
            stream = await self._open(prompt, usage)
            async with stream:
                async for chunk in stream:
                    tally.feed(chunk, time.perf_counter())
        # Whatever a request meets is that request's error: a refusal, a dropped connection (raised by
        # whichever HTTP library this SDK release uses: httpx, httpx2, aiohttp), a chunk that is not
        # OpenAI's shape. The load goes on and the report counts it, with its message.
        except Exception as error:
            return tally.result(time.perf_counter(), describe(error))
        return tally.result(time.perf_counter())

    async def _open(self, prompt: str, usage: ChatCompletionStreamOptionsParam | Omit) -> Any:
        messages: list[ChatCompletionUserMessageParam] = [{"role": "user", "content": prompt}]
        return await self._client.chat.completions.create(
            model=self.model,
            messages=messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stream=True,
            stream_options=usage,
            extra_body=self.extra_body,
        )


class CompletionTarget(ChatTarget):
    """The same, as a raw prompt to /v1/completions: for base models, which have no chat template."""

    async def _open(self, prompt: str, usage: ChatCompletionStreamOptionsParam | Omit) -> Any:
        return await self._client.completions.create(
            model=self.model,
            prompt=prompt,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stream=True,
            stream_options=usage,
            extra_body=self.extra_body,
        )


async def first_model(client: openai.AsyncOpenAI) -> tuple[str, list[str]]:
    """The first model the server lists (GET /v1/models), and all of them."""
    names = [model.id async for model in client.models.list()]
    if not names:
        raise ValueError("the server lists no models; name one with --model")
    return names[0], names
