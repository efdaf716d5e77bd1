"""Progress for long transfers: a live bar on a terminal, a log line every tenth otherwise (CI, pods)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

log = logging.getLogger("localmodel.progress")

Advance = Callable[[int], None]


@contextmanager
def transfer_progress(description: str, total: int | None, done: int = 0) -> Iterator[Advance]:
    """Report bytes moved; yields `advance(n_bytes)`. `total` None: size unknown."""
    if sys.stderr.isatty():
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        ) as bar:
            task = bar.add_task(description, total=total, completed=done)
            yield lambda n: bar.advance(task, n)
        return

    state = {"done": done, "next_tenth": _next_tenth(done, total)}

    def advance(n: int) -> None:
        state["done"] += n
        if total and state["done"] >= state["next_tenth"] * total // 10:
            log.info("%s: %d%% of %.1f MB", description, state["done"] * 100 // total, total / 1e6)
            state["next_tenth"] = _next_tenth(state["done"], total)

    log.info("%s: starting (%s)", description, f"{total / 1e6:.1f} MB" if total else "size unknown")
    yield advance
    log.info("%s: done, %.1f MB", description, state["done"] / 1e6)


def _next_tenth(done: int, total: int | None) -> int:
    return done * 10 // total + 1 if total else 0
