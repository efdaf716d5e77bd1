"""The figures as table rows (with ratios to baseline systems), a rich table, Markdown, and JSON.

Columns: aggregate tokens/s (every token generated at the level over its wall time), its ratio to each
baseline at the same concurrency, time to first token, inter-token latency (the gaps between a stream's
consecutive content chunks, pooled over the level's streams) and request latency (p50, p95), and the
median stream's tokens/s after its first token (the decode speed one client sees while its request runs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from localmodel.loadgen.driver import LevelRun
from localmodel.loadgen.stats import LevelSummary, ratio

SOURCE_NOTES = {
    "usage": "tokens: the server's usage figures (stream_options.include_usage)",
    "chunks": "tokens: content chunks counted (the stream carried no usage figures); a chunk may hold more "
    "than one token, so this can only undercount",
    "mixed": "tokens: usage figures for some requests, content chunks counted for the others",
}


def headers(baselines: Sequence[str]) -> list[str]:
    return [
        "system",
        "clients",
        "requests",
        "errors",
        "tokens",
        "tokens/s",
        *(f"× {name}" for name in baselines),
        "TTFT p50",
        "TTFT p95",
        "ITL p50",
        "ITL p95",
        "latency p50",
        "latency p95",
        "stream tokens/s p50",
        "tokens from",
    ]


def ratios(summaries: Sequence[LevelSummary], baseline: str) -> dict[tuple[str, int], float | None]:
    """(system, concurrency) → its tokens/s over the baseline's at the same concurrency."""
    base = {s.concurrency: s.tokens_per_second for s in summaries if s.system == baseline}
    return {
        (s.system, s.concurrency): ratio(s.tokens_per_second, base[s.concurrency])
        for s in summaries
        if s.concurrency in base
    }


def rows(summaries: Sequence[LevelSummary], baselines: Sequence[str] = ()) -> list[list[str]]:
    """One row per summary, in the order given; a baseline's column is blank in its own row."""
    against = {name: ratios(summaries, name) for name in baselines}
    table = []
    for s in summaries:
        ratio_cells = [
            "" if s.system == name else _times(against[name].get((s.system, s.concurrency)))
            for name in baselines
        ]
        table.append(
            [
                s.system,
                str(s.concurrency),
                str(s.requests),
                str(s.errors),
                str(s.tokens),
                f"{s.tokens_per_second:.1f}",
                *ratio_cells,
                _ms(s.ttft_p50),
                _ms(s.ttft_p95),
                _ms(s.itl_p50, 1),
                _ms(s.itl_p95, 1),
                _seconds(s.latency_p50),
                _seconds(s.latency_p95),
                "—" if s.stream_rate_p50 is None else f"{s.stream_rate_p50:.1f}",
                s.source,
            ]
        )
    return table


def rich_table(summaries: Sequence[LevelSummary], baselines: Sequence[str] = (), title: str = "") -> Table:
    table = Table(title=title or None)
    for index, header in enumerate(headers(baselines)):
        table.add_column(header, justify="left" if index == 0 else "right", no_wrap=index == 0)
    for row in rows(summaries, baselines):
        table.add_row(*row)
    return table


def markdown(summaries: Sequence[LevelSummary], baselines: Sequence[str] = ()) -> str:
    head = headers(baselines)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(summaries, baselines)]
    return "\n".join(lines) + "\n"


def notes(summaries: Sequence[LevelSummary]) -> list[str]:
    """What a reader must know to read the table: how each system's tokens were counted, what failed."""
    found = []
    for system in dict.fromkeys(s.system for s in summaries):
        sources = {s.source for s in summaries if s.system == system} - {"none"}
        for source in sorted(sources):
            found.append(f"{system}: {SOURCE_NOTES[source]}")
        errors = [s for s in summaries if s.system == system and s.errors]
        for s in errors:
            found.append(f"{system}, {s.concurrency} clients: {s.errors} failed, first: {s.first_error}")
    return found


def as_json(runs: Sequence[LevelRun], context: dict[str, Any]) -> dict[str, Any]:
    """Everything measured, each request included, with the context the caller describes."""
    levels = []
    for run in runs:
        summary = dataclasses.asdict(run.summary)
        summary["tokens_per_second"] = run.summary.tokens_per_second
        summary["results"] = [dataclasses.asdict(result) for result in run.results]
        levels.append(summary)
    return {"context": context, "levels": levels}


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _ms(seconds: float | None, decimals: int = 0) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.{decimals}f} ms"


def _seconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"
