"""Hold requests for a model that has no ready backend yet but will (starting, or scaled to zero).

The wait is bounded twice: at most `max_held` requests per model wait, each for at most `timeout`
seconds; beyond either the answer is 503 with Retry-After. A model scaled to zero is asked for a replica
by the first request that finds it so. A request whose every endpoint refused to connect (a backend that
just crashed) waits briefly for discovery to notice, then is held like the others.
"""

from __future__ import annotations

import asyncio
import time

from localmodel_router import metrics
from localmodel_router.discovery import Discovery, ModelRoute
from localmodel_router.errors import ModelNotFoundError, OverloadedError


class Hold:
    def __init__(self, discovery: Discovery, max_held: int, timeout: float) -> None:
        self._discovery = discovery
        self._max_held = max_held
        self._timeout = timeout
        self._held: dict[str, int] = {}

    def held(self, model: str) -> int:
        return self._held.get(model, 0)

    async def ready(self, route: ModelRoute) -> ModelRoute:
        """The route once it has an endpoint: at once when it has one, else after a bounded wait."""
        if not route.can_hold:
            return route
        name = route.name
        if self.held(name) >= self._max_held:
            raise OverloadedError(
                f"model '{name}' is starting and {self.held(name)} requests wait for it already; retry later",
                retry_after=max(1, round(self._timeout / 4)),
            )
        self._held[name] = self.held(name) + 1
        started = time.perf_counter()
        try:
            with metrics.HELD.labels(name).track_inprogress():
                return await asyncio.wait_for(self._until_ready(route), self._timeout)
        except TimeoutError:
            raise OverloadedError(
                f"model '{name}' has no ready backend after {self._timeout:.0f}s; retry later"
                + self.why(name),
                retry_after=max(1, round(self._timeout / 4)),
            ) from None
        finally:
            self._held[name] -= 1
            metrics.HELD_SECONDS.labels(name).observe(time.perf_counter() - started)

    def why(self, model: str) -> str:
        """'. Why: <what ended its backends>' when discovery knows (a crashed process), else ''."""
        current = self._discovery.table().get(model)
        return f". Why: {current.failure}" if current is not None and current.failure else ""

    async def _until_ready(self, route: ModelRoute) -> ModelRoute:
        if route.scales_from_zero and not route.starting:
            await self._discovery.request_replica(route.name)
        while True:
            current = self._discovery.table().get(route.name)
            if current is None:
                raise ModelNotFoundError(f"model '{route.name}' was removed while starting", param="model")
            if current.endpoints:
                return current
            if current.failing_to_start and current.failure:
                raise OverloadedError(
                    f"model '{route.name}' cannot start: {current.failure}",
                    retry_after=max(1, round(self._timeout / 4)),
                )
            await self._discovery.wait_for_change()

    async def after_unreachable(self, route: ModelRoute, tried: set[str], grace: float) -> ModelRoute | None:
        """Every endpoint of `route` in `tried` refused connections. A provider that noticed (a crashed
        process, a deleted pod) publishes a new table soon: wait up to `grace` seconds for one with an
        untried endpoint, or with a replica on its way (then hold as usual). None: nothing changed."""
        if not self._discovery.changes:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            current = self._discovery.table().get(route.name)
            if current is None:
                return None
            if set(current.endpoints) - tried:
                return current
            if current.can_hold:
                return await self.ready(current)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for starts the wait in a task of its own,
                # which could miss a table published before that task first runs.
                async with asyncio.timeout(deadline - loop.time()):
                    await self._discovery.wait_for_change()
            except TimeoutError:
                return None
