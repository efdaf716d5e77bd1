"""Where models are served: the interface every discovery provider implements, and the routing table.

Providers (static, local mode, Kubernetes) keep a `RoutingTable` up to date; endpoints read the
current table once per request, so a provider swaps in a new table instead of mutating one. Requests held
for a starting model wait for the next swap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from localmodel.spec import LoadBalancing
from localmodel_router.errors import BadRequestError, ModelNotFoundError


@dataclass(frozen=True)
class ModelRoute:
    """A servable model: its name, the other names that reach it, and its ready backend addresses."""

    name: str
    endpoints: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    max_tokens: int | None = None
    # What the model is served for (LocalModel `tasks`: chat, completion, embedding, rerank); None: not
    # known (a fixed backend address), so every endpoint is tried.
    tasks: frozenset[str] | None = None
    # Its backends are localmodel's llama.cpp engine, which gives a request's `n` answers from one
    # prefill (PredictOptions.n, Reply.index); others (a fixed address, an image of one's own) get one
    # call per answer.
    shares_prefill: bool = False
    created: int = 0  # unix seconds, for /v1/models
    owned_by: str = "localmodel"
    load_balancing: LoadBalancing = LoadBalancing()
    resource: str | None = None  # `namespace/name` of the LocalModel (Kubernetes discovery), for scaling
    # With no ready endpoint: a replica is on its way (requests wait for it), or one may be asked for
    # (minReplicas 0: a request wakes the model). Otherwise requests are refused at once.
    starting: bool = False
    scales_from_zero: bool = False
    # Why the model's backends are failing (a crashed process's signal and what to do), as the provider
    # knows it: put into the errors of requests that find no backend, and into /readyz. The process's
    # last output goes to /readyz only (it may name files and hosts; API clients get the reason).
    failure: str | None = None
    failure_output: tuple[str, ...] = ()
    # Its backends die before they are ready (a crash at load or warm-up, as a crash loop): held requests
    # are answered at once with the failure instead of waiting for a start that will fail the same way.
    failing_to_start: bool = False

    @property
    def can_hold(self) -> bool:
        """Whether a request finding no endpoint should wait for one rather than fail."""
        return not self.endpoints and (self.starting or self.scales_from_zero)


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

    def resolve(self, model: str, task: str | None = None) -> ModelRoute:
        """The route for a model name or alias, which must serve `task` if one is named (its LocalModel's
        `tasks`); 404 naming the known models, or 400 naming what the model serves."""
        route = self.get(model)
        if route is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ModelNotFoundError(
                f"The model '{model}' does not exist. Models served here: {known}", param="model"
            )
        if task is not None and route.tasks is not None and task not in route.tasks:
            raise BadRequestError(
                f"The model '{model}' does not serve {task} requests; its tasks are "
                f"{', '.join(sorted(route.tasks))}",
                param="model",
            )
        return route

    def names(self) -> list[str]:
        """Every routable name: served names and aliases."""
        return list(self._by_name)

    def has_ready_model(self) -> bool:
        return any(route.endpoints for route in self.routes.values())

    def failures(self) -> dict[str, dict[str, object]]:
        """Served name → why its backends fail and their last output, for models with a known failure."""
        return {
            name: {"reason": route.failure, "lastOutput": list(route.failure_output)}
            for name, route in self.routes.items()
            if route.failure
        }


class PublishedTable:
    """The current table of a provider; it publishes whole new tables, and waiters wake on each one."""

    def __init__(self, table: RoutingTable | None = None) -> None:
        self._table = table or RoutingTable()
        self._published = asyncio.Event()

    def get(self) -> RoutingTable:
        return self._table

    def publish(self, table: RoutingTable) -> None:
        self._table = table
        self._published.set()
        self._published = asyncio.Event()  # the next waiters wait for the next table

    async def wait_for_next(self) -> None:
        await self._published.wait()


class Discovery(Protocol):
    """Keeps the routing table current."""

    changes: bool  # whether new tables are ever published (static routes never change)

    def table(self) -> RoutingTable:
        """The current routing table (a snapshot; never mutated)."""
        ...

    async def wait_for_change(self) -> None:
        """Return once a new table is published."""
        ...

    async def request_replica(self, model: str) -> None:
        """Ask for a replica of a model scaled to zero (returns at once; the table shows it when ready)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
