"""Static discovery: models and backend addresses fixed by configuration (flags or a YAML file)."""

from __future__ import annotations

import time

from localmodel_router.discovery import ModelRoute, RoutingTable
from localmodel_router.settings import StaticModel


class StaticDiscovery:
    def __init__(self, models: list[StaticModel]) -> None:
        created = int(time.time())
        self._table = RoutingTable(
            {
                model.name: ModelRoute(
                    name=model.name,
                    endpoints=tuple(model.endpoints),
                    aliases=tuple(model.aliases),
                    max_tokens=model.max_tokens,
                    created=created,
                )
                for model in models
            }
        )

    def table(self) -> RoutingTable:
        return self._table

    async def start(self) -> None:
        """Nothing to watch."""

    async def close(self) -> None:
        """Nothing to release."""
