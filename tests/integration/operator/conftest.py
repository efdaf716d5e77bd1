"""kopf running for real against kmock's Kubernetes emulator over HTTP on loopback (extended in
tests/support/api_server.py with what the operator relies on: uid, generation, garbage collection)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import traceback
from collections.abc import AsyncIterator

import kopf
import pytest

from localmodel_operator.settings import OperatorSettings
from localmodel_operator.startup import initial_memo
from tests.support.api_server import Cluster

STOP_TIMEOUT_SECONDS = 30.0


class OperatorThread(threading.Thread):
    """The operator's kopf handlers on an event loop of their own, in a thread, as kopf's docs embed it.

    Its own loop is the point. When kopf stops, it waits for and then cancels every task of its loop
    that it did not start with (kopf's `run_tasks`). In the test's loop those were the API emulator's
    never-ending watch handlers and pytest-asyncio's own tasks, so a stop waited 5 s and had to be cut
    short by cancelling kopf; and a cancel that reached a watcher's per-object scheduler after its
    cleaner task had been cancelled left the watcher waiting forever for the scheduler to drain, which
    held the test loop's close until pytest-timeout (CI, 2026-12-03). On a loop of its own, kopf's
    stop flag stops it cleanly in well under a second."""

    def __init__(self, operator_settings: OperatorSettings) -> None:
        super().__init__(name="kopf-operator", daemon=True)
        self._operator_settings = operator_settings
        self.ready, self.stop_flag = threading.Event(), threading.Event()
        self._loop = asyncio.new_event_loop()
        self._operator: asyncio.Task[None] | None = None
        self.stuck: list[str] = []  # what did not end when cancelled, with its stack
        self.failure: BaseException | None = None

    def run(self) -> None:
        from localmodel_operator import handlers  # noqa: F401  (registers the handlers)

        settings = kopf.OperatorSettings()
        settings.scanning.disabled = True
        settings.watching.reconnect_backoff = 0.1
        operator = kopf.operator(
            settings=settings,
            clusterwide=True,
            standalone=True,
            memo=initial_memo(self._operator_settings),
            stop_flag=self.stop_flag,
            ready_flag=self.ready,
        )
        asyncio.set_event_loop(self._loop)
        self._operator = self._loop.create_task(operator)
        try:
            self._loop.run_until_complete(self._operator)
        except asyncio.CancelledError:
            pass
        except BaseException as error:  # noqa: BLE001  (reported by the test that ran it)
            self.failure = error
        finally:
            self._end_leftovers()
            self._loop.close()

    def cancel(self) -> None:
        """End the operator at once, for one that did not stop by its flag."""
        if self._operator is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self._loop.call_soon_threadsafe(self._operator.cancel)

    def _end_leftovers(self) -> None:
        leftovers = asyncio.all_tasks(self._loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            self._loop.run_until_complete(asyncio.wait(leftovers, timeout=STOP_TIMEOUT_SECONDS))
        self.stuck = [_stack_of(task) for task in leftovers if not task.done()]


def _stack_of(task: asyncio.Task[object]) -> str:
    """Where a task waits: its await chain down to the innermost frame (a task's own stack shows only
    its outermost coroutine)."""
    lines, awaited = [f"{task.get_name()}:"], task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def run_operator(operator_settings: OperatorSettings | None = None) -> AsyncIterator[None]:
    """The operator, running until the block ends; it fails the test if it does not stop."""
    thread = OperatorThread(operator_settings or OperatorSettings())
    thread.start()
    if not await asyncio.to_thread(thread.ready.wait, 10):
        thread.cancel()
        raise AssertionError(f"the operator did not start within 10s: {thread.failure!r}")
    await asyncio.sleep(0.5)  # its watch streams open
    try:
        yield
    finally:
        thread.stop_flag.set()  # kopf's own graceful stop: well under a second here
        await asyncio.to_thread(thread.join, STOP_TIMEOUT_SECONDS)
        graceful = not thread.is_alive()
        if not graceful:
            thread.cancel()
            await asyncio.to_thread(thread.join, 2 * STOP_TIMEOUT_SECONDS)
        assert not thread.is_alive(), "the operator's thread did not end, even when cancelled"
        assert not thread.stuck, "operator tasks that did not end when cancelled:\n" + "\n".join(thread.stuck)
        assert thread.failure is None, "the operator failed:\n" + "".join(
            traceback.format_exception(thread.failure)
        )
        assert graceful, f"the operator did not stop within {STOP_TIMEOUT_SECONDS:.0f}s of its stop flag"


@pytest.fixture
async def operator(cluster: Cluster) -> AsyncIterator[Cluster]:
    async with run_operator():
        yield cluster
