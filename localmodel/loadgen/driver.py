"""Closed-loop load: N clients, each sending its next request as soon as its last one ended.

A system is anything with a name and an async `send(prompt) -> RequestResult` that never raises (a
failure is a result with `error` set). Several systems are measured level by level, in turn at each
concurrency, so that a drift in the machine's speed during the run hits every system alike; the turn
order rotates from one level to the next, so that no system always goes first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from localmodel.loadgen.stats import LevelSummary, RequestResult, summarise

Send = Callable[[str], Awaitable[RequestResult]]


@dataclass(frozen=True)
class System:
    name: str
    send: Send
    note: str = ""  # how it was run, for the report


@dataclass(frozen=True)
class LevelRun:
    summary: LevelSummary
    results: list[RequestResult]


class WarmupError(RuntimeError):
    """A system's warm-up request failed: nothing it would measure could be trusted."""


async def run_level(
    send: Send, prompts: Sequence[str], concurrency: int, requests: int
) -> tuple[list[RequestResult], float]:
    """`requests` requests (request i asks prompts[i % len(prompts)]) from `concurrency` clients;
    the results in the order they ended, and the level's wall time in seconds."""
    if concurrency < 1 or requests < 1 or not prompts:
        raise ValueError("a level needs at least one client, one request and one prompt")
    indices = iter(range(requests))  # shared: each client takes the next index when it is free
    results: list[RequestResult] = []

    async def client() -> None:
        for index in indices:
            prompt = prompts[index % len(prompts)]
            results.append(dataclasses.replace(await send(prompt), prompt=prompt))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results, time.perf_counter() - started


async def measure(
    systems: Sequence[System],
    prompts: Sequence[str],
    concurrencies: Sequence[int],
    requests: int,
    warmup: int = 1,
    progress: Callable[[str], None] = lambda _: None,
) -> list[LevelRun]:
    """Warm each system up (not counted), then run every concurrency level on each system in turn.
    The runs come back in the order they ran."""
    for system in systems:
        for _ in range(warmup):
            result = await system.send(prompts[0])
            if not result.ok:
                raise WarmupError(f"{system.name}: the warm-up request failed: {result.error}")
    runs: list[LevelRun] = []
    for level, concurrency in enumerate(concurrencies):
        first = level % len(systems)
        for system in [*systems[first:], *systems[:first]]:
            progress(f"{system.name}: {requests} requests from {concurrency} concurrent clients")
            results, seconds = await run_level(system.send, prompts, concurrency, requests)
            runs.append(LevelRun(summarise(system.name, concurrency, results, seconds), results))
    return runs
