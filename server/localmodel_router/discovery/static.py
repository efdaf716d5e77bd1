"""Static discovery: models and backend addresses fixed by configuration (flags or a YAML file)."""

from __future__ import annotations

import time

from localmodel_router.discovery import ModelRoute, PublishedTable, RoutingTable
from localmodel_router.settings import StaticModel


class StaticDiscovery:
    changes = False

    def __init__(self, models: list[StaticModel]) -> None:
        created = int(time.time())
        self._table = PublishedTable(
            RoutingTable(
                {
                    model.name: ModelRoute(
                        name=model.name,
                        endpoints=tuple(model.endpoints),
                        aliases=tuple(model.aliases),
                        max_tokens=model.max_tokens,
                        shares_prefill=model.shares_prefill,
                        created=created,
                    )
                    for model in models
                }
            )
        )

    def table(self) -> RoutingTable:
        return self._table.get()

    async def wait_for_change(self) -> None:
        """Static routes never change."""
        await self._table.wait_for_next()

    async def request_replica(self, model: str) -> None:
        """Static backends are never scaled to zero: there is nothing to ask."""

    async def start(self) -> None:
        """Nothing to watch."""

    async def close(self) -> None:
        """Nothing to release."""
