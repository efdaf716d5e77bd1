"""The load generator's pure parts: percentiles, token accounting, summaries, ratios and table rows; and
its OpenAI requests against an in-memory transport (no server, no network)."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletionChunk

from localmodel.loadgen.bench import parse_concurrencies
from localmodel.loadgen.client import ChatTarget, api_base
from localmodel.loadgen.driver import System, WarmupError, measure, run_level
from localmodel.loadgen.report import headers, markdown, notes, ratios, rows
from localmodel.loadgen.stats import (
    LevelSummary,
    RequestResult,
    StreamTally,
    percentile,
    summarise,
    token_count,
)


def chunk(
    content: str | None = None, role: str | None = None, usage: int | None = None
) -> ChatCompletionChunk:
    body: dict[str, Any] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [] if usage is not None else [{"index": 0, "delta": {"content": content, "role": role}}],
    }
    if usage is not None:
        body["usage"] = {"prompt_tokens": 5, "completion_tokens": usage, "total_tokens": 5 + usage}
    return ChatCompletionChunk.model_validate(body)


def result(tokens: int = 10, latency: float = 1.0, error: str | None = None, **fields: Any) -> RequestResult:
    values: dict[str, Any] = {"ttft": 0.1, "source": "usage", "chunks": tokens, **fields}
    return RequestResult(latency=latency, tokens=tokens, error=error, **values)


def summary(system: str, concurrency: int, tokens: int, seconds: float = 1.0) -> LevelSummary:
    return LevelSummary(system, concurrency, 4, 0, tokens, seconds, "usage", 0.05, 0.1, 1.0, 1.5, 120.0)


def test_percentiles_interpolate_between_closest_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0 and percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_usage_figures_win_over_counted_chunks() -> None:
    assert token_count(128, 120) == (128, "usage")
    assert token_count(None, 120) == (120, "chunks")
    assert token_count(0, 3) == (0, "usage")  # a reported zero is a figure, not a missing one


def test_a_tally_times_the_first_content_and_takes_the_servers_usage() -> None:
    tally = StreamTally(started=10.0)
    tally.feed(chunk(role="assistant", content=""), 10.05)  # the role chunk carries no content
    tally.feed(chunk("Hello"), 10.2)
    tally.feed(chunk(" world"), 10.3)
    tally.feed(chunk(), 10.31)  # the finish chunk
    tally.feed(chunk(usage=3), 10.32)  # more tokens than chunks: one token made no text of its own
    done = tally.result(10.4)
    assert done.ttft == pytest.approx(0.2) and done.latency == pytest.approx(0.4)
    assert (done.tokens, done.source, done.chunks, done.text) == (3, "usage", 2, "Hello world")
    assert done.ok and done.stream_rate == pytest.approx(2 / 0.2)
    assert done.gaps == pytest.approx((0.1,))  # between the two content chunks, not the role or finish


def test_inter_token_latency_pools_every_streams_gaps() -> None:
    streams = [
        result(gaps=(0.01, 0.02, 0.03)),
        result(gaps=(0.04,)),
        result(gaps=(9.0,), error="down"),  # a failed request's gaps are not counted
    ]
    level = summarise("ours", 2, streams, seconds=1.0)
    assert level.itl_p50 == pytest.approx(0.025) and level.itl_p95 == pytest.approx(0.0385)
    assert summarise("x", 1, [result()], 1.0).itl_p50 is None  # one chunk per stream: no gap


def test_a_tally_takes_streamed_completions_too() -> None:
    def completion(text: str, usage: int | None = None) -> Completion:
        body: dict[str, Any] = {
            "id": "c",
            "object": "text_completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "text": text, "finish_reason": None}],
        }
        if usage is not None:
            body["usage"] = {"prompt_tokens": 5, "completion_tokens": usage, "total_tokens": 5 + usage}
        # Built as the SDK builds streamed chunks (unvalidated): servers stream finish_reason null,
        # which the Completion model itself does not allow.
        return Completion.construct(**body)

    tally = StreamTally(started=0.0)
    for now, piece in ((0.5, "Once"), (0.6, ""), (0.7, " upon")):
        tally.feed(completion(piece), now)
    tally.feed(completion("", usage=2), 0.8)
    done = tally.result(1.0)
    assert (done.text, done.chunks, done.tokens, done.source) == ("Once upon", 2, 2, "usage")
    assert done.ttft == pytest.approx(0.5) and done.gaps == pytest.approx((0.2,))


def test_without_usage_the_content_chunks_are_counted_and_a_failure_keeps_what_came() -> None:
    tally = StreamTally(started=0.0)
    tally.feed(chunk("a"), 1.0)
    tally.feed(chunk("b"), 2.0)
    failed = tally.result(3.0, error="HTTP 502: backend failed")
    assert (failed.tokens, failed.source, failed.error, failed.ok) == (
        2,
        "chunks",
        "HTTP 502: backend failed",
        False,
    )
    assert StreamTally(started=0.0).result(1.0).ttft is None
    assert failed.stream_rate == pytest.approx(1 / 2.0)  # one token after the first, in 2 s


def test_a_summary_counts_successful_requests_only_and_says_how_tokens_were_counted() -> None:
    results = [
        result(tokens=100, latency=1.0, ttft=0.1),
        result(tokens=120, latency=2.0, ttft=0.3),
        result(tokens=7, latency=0.5, error="HTTP 503: overloaded"),
    ]
    level = summarise("ours", 2, results, seconds=2.2)
    assert (level.requests, level.errors, level.tokens) == (3, 1, 220)
    assert level.tokens_per_second == pytest.approx(100.0)
    assert level.ttft_p50 == pytest.approx(0.2) and level.latency_p95 == pytest.approx(1.95)
    assert level.source == "usage" and level.first_error == "HTTP 503: overloaded"
    # 99 tokens after the first in 0.9 s (110/s) and 119 in 1.7 s (70/s): the median is 90/s.
    assert level.stream_rate_p50 == pytest.approx((110.0 + 70.0) / 2)
    mixed = summarise("x", 1, [result(), result(source="chunks")], 1.0)
    assert mixed.source == "mixed"
    nothing = summarise("x", 1, [result(error="down")], 1.0)
    assert (nothing.source, nothing.tokens, nothing.ttft_p50, nothing.tokens_per_second) == (
        "none",
        0,
        None,
        0.0,
    )


def test_ratios_compare_each_system_with_the_baseline_at_the_same_concurrency() -> None:
    summaries = [
        summary("ours", 1, 99),
        summary("base", 1, 90),
        summary("ours", 2, 100, seconds=2.0),
        summary("base", 2, 0),
        summary("ours", 4, 50),  # the baseline did not run at 4
    ]
    found = ratios(summaries, "base")
    assert found[("ours", 1)] == pytest.approx(1.1) and found[("base", 1)] == pytest.approx(1.0)
    assert found[("ours", 2)] is None  # a baseline that made nothing gives no ratio
    assert ("ours", 4) not in found


def test_rows_carry_ratio_columns_blank_for_the_baseline_itself() -> None:
    summaries = [summary("ours", 1, 99), summary("base", 1, 90), summary("other", 1, 45)]
    table = rows(summaries, ["base", "other"])
    assert headers(["base", "other"])[5:8] == ["tokens/s", "× base", "× other"]
    assert table[0][:8] == ["ours", "1", "4", "0", "99", "99.0", "1.10×", "2.20×"]
    assert table[1][6:8] == ["", "2.00×"] and table[2][6:8] == ["0.50×", ""]
    assert table[0][8:] == ["50 ms", "100 ms", "—", "—", "1.00 s", "1.50 s", "120.0", "usage"]
    assert rows([summary("ours", 1, 5)])[0][6] == "50 ms"  # no baselines: no ratio columns


def test_markdown_has_one_line_per_summary_under_a_header() -> None:
    text = markdown([summary("ours", 1, 99), summary("base", 1, 90)], ["base"])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| system |") and lines[1].startswith("|---|---:|")
    assert lines[1].count("|") == lines[0].count("|") and "| 1.10× |" in lines[2]


def test_notes_say_how_tokens_were_counted_and_what_failed() -> None:
    counted = LevelSummary(
        "theirs", 2, 4, 1, 30, 1.0, "chunks", None, None, None, None, first_error="HTTP 500: boom"
    )
    lines = notes([summary("ours", 1, 10), counted])
    assert any(line.startswith("ours: tokens: the server's usage") for line in lines)
    assert any(line.startswith("theirs: tokens: content chunks counted") for line in lines)
    assert "theirs, 2 clients: 1 failed, first: HTTP 500: boom" in lines


@pytest.mark.parametrize(
    ("typed", "base"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
        ("https://llm.example/v1/", "https://llm.example/v1"),
        ("http://gateway/openai/v1", "http://gateway/openai/v1"),
    ],
)
def test_a_bare_host_gets_v1_and_a_path_is_kept(typed: str, base: str) -> None:
    assert api_base(typed) == base


def test_a_url_without_http_is_refused() -> None:
    for bad in ("127.0.0.1:8080", "ftp://host/v1", "http://"):
        with pytest.raises(ValueError, match="expected an http"):
            api_base(bad)


def test_concurrency_lists() -> None:
    assert parse_concurrencies("1,2,4,8") == (1, 2, 4, 8)
    assert parse_concurrencies("3") == (3,)
    for bad, message in (("1,x", "numbers and commas"), ("0,1", "at least 1"), ("2,2", "listed twice")):
        with pytest.raises(ValueError, match=message):
            parse_concurrencies(bad)


def test_a_level_keeps_exactly_n_clients_busy_and_cycles_the_prompts() -> None:
    in_flight, most, asked = 0, 0, []

    async def send(prompt: str) -> RequestResult:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        asked.append(prompt)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return result(tokens=1)

    results, seconds = asyncio.run(run_level(send, ["a", "b", "c"], concurrency=3, requests=7))
    assert len(results) == 7 and most == 3 and seconds > 0
    assert sorted(asked) == ["a", "a", "a", "b", "b", "c", "c"]
    assert sorted(r.prompt for r in results) == sorted(asked)  # each result knows its prompt
    with pytest.raises(ValueError, match="at least one client"):
        asyncio.run(run_level(send, ["a"], concurrency=0, requests=1))


def test_systems_take_turns_at_each_level_after_an_uncounted_warm_up() -> None:
    calls: list[str] = []

    def system(name: str, fail: bool = False) -> System:
        async def send(prompt: str) -> RequestResult:
            assert prompt == "p"
            calls.append(name)
            return result(error="refused" if fail else None)

        return System(name, send)

    runs = asyncio.run(measure([system("a"), system("b"), system("c")], ["p"], [1, 2, 4], requests=2))
    # Warm-ups, then each level in turn, the first to go rotating: a, b, c; then b, c, a; then c, a, b.
    assert calls == ["a", "b", "c"] + [name for name in "abcbcacab" for _ in range(2)]
    assert [(run.summary.system, run.summary.concurrency) for run in runs] == [
        ("a", 1), ("b", 1), ("c", 1), ("b", 2), ("c", 2), ("a", 2), ("c", 4), ("a", 4), ("b", 4),
    ]  # fmt: skip
    with pytest.raises(WarmupError, match="b: the warm-up request failed: refused"):
        asyncio.run(measure([system("a"), system("b", fail=True)], ["p"], [1], requests=1))


def sse(*chunks: dict[str, Any]) -> bytes:
    return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks).encode() + b"data: [DONE]\n\n"


def mock_client(answer: Callable[[dict[str, Any]], tuple[int, bytes]]) -> openai.AsyncOpenAI:
    """The official client over an in-memory transport. The SDK's HTTP library differs between releases
    (httpx, httpx2): take MockTransport and Response from whichever its default client is built on."""
    base = type(openai.DefaultAsyncHttpxClient()).__mro__[1]
    http = importlib.import_module(base.__module__.split(".")[0])

    def handle(request: Any) -> Any:
        status, body = answer(json.loads(request.content))
        return http.Response(status, content=body, headers={"content-type": "text/event-stream"})

    transport = http.MockTransport(handle)
    return openai.AsyncOpenAI(
        base_url="http://server/v1",
        api_key="k",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(transport=transport),
    )


def wire_chunk(content: str | None = None, usage: int | None = None) -> dict[str, Any]:
    return chunk(content, usage=usage).model_dump(exclude_none=True)


def test_a_server_refusing_stream_options_is_asked_again_without_and_its_chunks_are_counted() -> None:
    bodies: list[dict[str, Any]] = []

    def answer(body: dict[str, Any]) -> tuple[int, bytes]:
        bodies.append(body)
        if "stream_options" in body:
            refusal = {"error": {"message": "unknown field: stream_options", "type": "invalid_request_error"}}
            return 400, json.dumps(refusal).encode()
        return 200, sse(wire_chunk("a"), wire_chunk(" b"))

    target = ChatTarget(mock_client(answer), "m", max_tokens=8)
    done = asyncio.run(target.send("hi"))
    assert (done.ok, done.tokens, done.source, done.text) == (True, 2, "chunks", "a b")
    assert target.ask_usage is False and len(bodies) == 2
    assert bodies[1]["max_tokens"] == 8 and bodies[1]["temperature"] == 0 and bodies[1]["stream"] is True
    assert bodies[1]["messages"] == [{"role": "user", "content": "hi"}]


def test_a_servers_usage_chunk_is_the_count_and_an_error_status_is_the_requests_error() -> None:
    target = ChatTarget(mock_client(lambda _: (200, sse(wire_chunk("a"), wire_chunk(usage=5)))), "m", 8)
    done = asyncio.run(target.send("hi"))
    assert (done.tokens, done.source, done.chunks) == (5, "usage", 1)
    overloaded = {"error": {"message": "overloaded", "type": "server_error"}}
    failing = ChatTarget(mock_client(lambda _: (503, json.dumps(overloaded).encode())), "m", 8)
    failed = asyncio.run(failing.send("hi"))
    assert failed.error == "HTTP 503: overloaded" and failed.tokens == 0
