"""A stand-in for the router's `GET /load` (localmodel_router/routes/scaling.py), with figures a test sets:
what the operator's autoscaler reads, without requests to hold."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from tests.support.api_server import NAMESPACE


class StandInRouter:
    """`GET /load` reporting `active` requests for LocalModel `ai/<model>`; `failing` answers 500."""

    def __init__(self, model: str = "m") -> None:
        self.model = model
        self.active = 0
        self.failing = False
        self.url = ""
        self.port = 0

    async def _load(self, _: web.Request) -> web.Response:
        if self.failing:
            return web.Response(status=500)
        report = {
            "model": self.model,
            "localModel": f"{NAMESPACE}/{self.model}",
            "active": self.active,
            "idleSeconds": 0,
        }
        return web.json_response({"models": [report]})

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[StandInRouter]:
        app = web.Application()
        app.router.add_get("/load", self._load)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            yield self
        finally:
            await runner.cleanup()
