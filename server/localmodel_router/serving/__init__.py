"""What each endpoint family does between parsing the request and rendering the response."""

from __future__ import annotations

from localmodel_router.discovery import Discovery
from localmodel_router.dispatch import Dispatcher


class Service:
    """What every endpoint family needs: the routing table's source and the way to reach backends."""

    def __init__(self, discovery: Discovery, dispatcher: Dispatcher) -> None:
        self._discovery = discovery
        self._dispatcher = dispatcher
