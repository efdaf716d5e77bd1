"""What one streamed request measured, how its tokens are counted, and what a level of requests adds up to.

Tokens are counted honestly: the server's own usage figure (`stream_options.include_usage`) when it
sends one, else the content chunks received, and every result says which. A chunk usually carries one
token, but a server may merge several (held-back stop-string prefixes, split UTF-8 characters), so
chunk counts can only be lower than the true figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from openai.types import Completion, CompletionChoice
from openai.types.chat import ChatCompletionChunk

TokenSource = Literal["usage", "chunks"]


@dataclass(frozen=True)
class RequestResult:
    """One request: seconds from sending it to its first content and to its end, and what it generated."""

    ttft: float | None  # None: no content arrived
    latency: float
    tokens: int
    source: TokenSource
    chunks: int
    text: str = ""
    error: str | None = None
    prompt: str = ""  # filled in by the driver
    gaps: tuple[float, ...] = ()  # seconds between consecutive content chunks: the inter-token latency

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def stream_rate(self) -> float | None:
        """Tokens/s of this stream after its first content: the decode speed one client saw."""
        if self.ttft is None or self.tokens < 2 or self.latency <= self.ttft:
            return None
        return (self.tokens - 1) / (self.latency - self.ttft)


@dataclass
class StreamTally:
    """Fed a stream's chunks as they arrive; `result()` turns them into a RequestResult.

    `started` and every `now` are readings of the same clock (time.perf_counter), in seconds.
    """

    started: float
    first_content: float | None = None
    last_content: float | None = None
    gaps: list[float] = field(default_factory=list)
    chunks: int = 0
    usage_tokens: int | None = None
    pieces: list[str] = field(default_factory=list)

    def feed(self, chunk: ChatCompletionChunk | Completion, now: float) -> None:
        """A chat completion chunk, or a (legacy) completion's streamed chunk."""
        if chunk.usage is not None:  # the last one wins: some servers send running totals
            self.usage_tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            text = choice.text if isinstance(choice, CompletionChoice) else choice.delta.content
            if text:
                self.content(text, now)

    def content(self, text: str, now: float) -> None:
        """A piece of streamed text (what a chunk's content or a completion's text holds)."""
        self.chunks += 1
        self.pieces.append(text)
        if self.first_content is None:
            self.first_content = now
        if self.last_content is not None:
            self.gaps.append(now - self.last_content)
        self.last_content = now

    def result(self, now: float, error: str | None = None) -> RequestResult:
        tokens, source = token_count(self.usage_tokens, self.chunks)
        return RequestResult(
            ttft=None if self.first_content is None else self.first_content - self.started,
            latency=now - self.started,
            tokens=tokens,
            source=source,
            chunks=self.chunks,
            text="".join(self.pieces),
            error=error,
            gaps=tuple(self.gaps),
        )


def token_count(usage_tokens: int | None, content_chunks: int) -> tuple[int, TokenSource]:
    """The server's completion_tokens when it reported them, else the content chunks counted."""
    if usage_tokens is not None:
        return usage_tokens, "usage"
    return content_chunks, "chunks"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), interpolating linearly between closest ranks; None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(value: float, baseline: float) -> float | None:
    """value / baseline, or None where the baseline measured nothing."""
    return value / baseline if baseline > 0 else None


@dataclass(frozen=True)
class LevelSummary:
    """One system at one concurrency: aggregate throughput, latency percentiles, errors."""

    system: str
    concurrency: int
    requests: int
    errors: int
    tokens: int
    seconds: float  # wall time of the level: first request sent to last one ended
    source: str  # "usage", "chunks", "mixed" (some of each), or "none" (no request succeeded)
    ttft_p50: float | None
    ttft_p95: float | None
    latency_p50: float | None
    latency_p95: float | None
    stream_rate_p50: float | None = None  # median of each request's tokens/s after its first token
    # Inter-token latency: the gaps between consecutive content chunks of every stream, pooled.
    itl_p50: float | None = None
    itl_p95: float | None = None
    first_error: str | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def summarise(
    system: str, concurrency: int, results: Sequence[RequestResult], seconds: float
) -> LevelSummary:
    """Tokens, TTFT and latency over the successful requests; failed ones count as errors only."""
    ok = [result for result in results if result.ok]
    failed = [result for result in results if not result.ok]
    sources = {result.source for result in ok}
    ttfts = [result.ttft for result in ok if result.ttft is not None]
    latencies = [result.latency for result in ok]
    rates = [rate for rate in (result.stream_rate for result in ok) if rate is not None]
    gaps = [gap for result in ok for gap in result.gaps]
    return LevelSummary(
        system=system,
        concurrency=concurrency,
        requests=len(results),
        errors=len(failed),
        tokens=sum(result.tokens for result in ok),
        seconds=seconds,
        source=sources.pop() if len(sources) == 1 else ("mixed" if sources else "none"),
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=percentile(ttfts, 95),
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
        stream_rate_p50=percentile(rates, 50),
        itl_p50=percentile(gaps, 50),
        itl_p95=percentile(gaps, 95),
        first_error=failed[0].error if failed else None,
    )
