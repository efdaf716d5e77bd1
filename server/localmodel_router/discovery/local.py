"""Local-mode discovery: routes to backend processes that local mode supervises on this machine.

The supervisor reports each model's ready addresses with `set_endpoints`; a request for a model scaled to
zero calls back into the supervisor through `request_replica`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from localmodel_router.discovery import ModelRoute, PublishedTable, RoutingTable


class LocalDiscovery:
    changes = True

    def __init__(self, routes: Iterable[ModelRoute], wake: Callable[[str], None]) -> None:
        self._table = PublishedTable(RoutingTable({route.name: route for route in routes}))
        self._wake = wake

    def table(self) -> RoutingTable:
        return self._table.get()

    async def wait_for_change(self) -> None:
        await self._table.wait_for_next()

    async def request_replica(self, model: str) -> None:
        self._wake(model)

    def set_endpoints(
        self,
        model: str,
        endpoints: Iterable[str],
        starting: bool,
        failure: str | None = None,
        failure_output: tuple[str, ...] = (),
        failing_to_start: bool = False,
    ) -> None:
        """Publish a model's ready backends; `starting`: more are on their way (requests wait for them);
        `failure`, `failure_output`, `failing_to_start`: why its last backend process ended, what it
        wrote last, and whether it died before it was ready — while none is ready."""
        routes = dict(self._table.get().routes)
        routes[model] = dataclasses.replace(
            routes[model],
            endpoints=tuple(endpoints),
            starting=starting,
            failure=failure,
            failure_output=failure_output,
            failing_to_start=failing_to_start,
        )
        self._table.publish(RoutingTable(routes))

    async def start(self) -> None:
        """The supervisor starts the processes; nothing to watch here."""

    async def close(self) -> None:
        """The supervisor stops the processes."""
