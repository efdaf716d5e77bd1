"""Waiting for what happens in its own time (another thread, process or controller): poll until it
holds, and fail naming what did not happen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0, every: float = 0.02) -> float:
    """Seconds until `condition()` holds; AssertionError after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(every)
    return time.monotonic() - started


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0, every: float = 0.02
) -> float:
    """Seconds until `await check()` holds; AssertionError after `timeout`."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(every)
    return time.monotonic() - started
