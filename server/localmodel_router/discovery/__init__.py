"""Where models are served: the interface every discovery provider implements, and the routing table.

Providers (static here; local mode and Kubernetes later) keep a `RoutingTable` up to date; endpoints read
the current table once per request, so a provider swaps in a new table instead of mutating one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from localmodel_router.errors import ModelNotFoundError


@dataclass(frozen=True)
class ModelRoute:
    """A servable model: its name, the other names that reach it, and its ready backend addresses."""

    name: str
    endpoints: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    max_tokens: int | None = None
    created: int = 0  # unix seconds, for /v1/models
    owned_by: str = "localmodel"


class RoutingTable:
    """Routes by served name, resolvable by name or alias; immutable once built."""

    def __init__(self, routes: Mapping[str, ModelRoute] | None = None) -> None:
        self.routes: Mapping[str, ModelRoute] = dict(routes or {})
        # Aliases index the same routes; a served name always wins over an alias.
        aliases = {alias: route for route in self.routes.values() for alias in route.aliases}
        self._by_name: dict[str, ModelRoute] = {**aliases, **self.routes}

    def get(self, model: str | None) -> ModelRoute | None:
        """The route for a model name or alias, or None."""
        return self._by_name.get(model) if model is not None else None

    def resolve(self, model: str) -> ModelRoute:
        """The route for a model name or alias; 404 naming the known models otherwise."""
        route = self.get(model)
        if route is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ModelNotFoundError(
                f"The model '{model}' does not exist. Models served here: {known}", param="model"
            )
        return route

    def names(self) -> list[str]:
        """Every routable name: served names and aliases."""
        return list(self._by_name)

    def has_ready_model(self) -> bool:
        return any(route.endpoints for route in self.routes.values())


class Discovery(Protocol):
    """Keeps the routing table current."""

    def table(self) -> RoutingTable:
        """The current routing table (a snapshot; never mutated)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
