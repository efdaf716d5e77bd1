"""`localmodel bench URL`: measure a deployment at several concurrencies, print a table, save JSON."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import openai
from rich.console import Console

from localmodel import __version__
from localmodel.loadgen.client import ChatTarget, api_base, describe, first_model
from localmodel.loadgen.driver import System, WarmupError, measure
from localmodel.loadgen.prompts import PROMPTS
from localmodel.loadgen.report import as_json, notes, rich_table


@dataclass(frozen=True)
class BenchOptions:
    url: str
    model: str | None
    concurrencies: tuple[int, ...]
    requests: int
    max_tokens: int
    temperature: float = 0.0
    api_key: str = "none"
    timeout: float = 300.0
    warmup: int = 1
    json_path: Path | None = None


def parse_concurrencies(text: str) -> tuple[int, ...]:
    """ "1,2,4,8" → (1, 2, 4, 8): positive whole numbers, each once, in the order given."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--concurrency {text!r}: expected numbers and commas: 1,2,4,8") from None
    if any(value < 1 for value in values):
        raise ValueError(f"--concurrency {text!r}: every concurrency must be at least 1")
    if len(set(values)) != len(values):
        raise ValueError(f"--concurrency {text!r}: a concurrency is listed twice")
    return values


async def bench(options: BenchOptions, console: Console) -> int:
    """0 when every request succeeded, 1 when some failed (the table still shows what was measured)."""
    base_url = api_base(options.url)
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key=options.api_key, max_retries=0, timeout=options.timeout
    )
    async with client:
        try:
            model, served = (options.model, []) if options.model else await first_model(client)
        except (openai.OpenAIError, ValueError) as error:
            console.print(f"[red]could not list the models at {base_url}: {describe(error)}[/]")
            return 1
        if len(served) > 1:
            console.print(f"the server lists {', '.join(served)}; measuring {model} (choose with --model)")
        target = ChatTarget(client, model, options.max_tokens, options.temperature)
        console.print(
            f"{model} at {base_url}: {options.requests} streamed chat requests per level, "
            f"max_tokens {options.max_tokens}, temperature {options.temperature}, "
            f"{options.warmup} warm-up request(s) not counted",
            style="dim",
        )
        try:
            runs = await measure(
                [System(model, target.send)],
                PROMPTS,
                options.concurrencies,
                options.requests,
                options.warmup,
                lambda line: console.print(line, style="dim"),
            )
        except WarmupError as error:
            console.print(f"[red]{error}[/]")
            return 1
    summaries = [run.summary for run in runs]
    console.print(rich_table(summaries, title=f"{model} at {base_url}"))
    for line in notes(summaries):
        console.print(line)
    if options.json_path is not None:
        context = {
            "tool": f"localmodel bench {__version__}",
            "url": base_url,
            "model": model,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "requests_per_level": options.requests,
            "client_host": platform.node(),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(as_json(runs, context), indent=2) + "\n")
        console.print(f"results written to {options.json_path}")
    return 1 if any(summary.errors for summary in summaries) else 0
