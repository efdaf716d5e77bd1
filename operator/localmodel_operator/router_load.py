"""The routers' load reports (`GET /load` on each router replica), summed per LocalModel.

Every model's autoscaler asks; one read serves them all for `max_age` seconds. Router replicas are
given as URLs, or found as the ready endpoints of the router's Service (so every replica is counted,
not just the one a Service address happens to reach).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import httpx
from pydantic import ValidationError

from localmodel.load_report import LoadReport

log = logging.getLogger(__name__)

Load = dict[str, float]  # "namespace/name" → requests now, all routers together


class RouterLoad:
    def __init__(
        self,
        urls: Sequence[str],
        find_urls: Callable[[], Awaitable[list[str]]] | None,
        max_age: float,
        timeout: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,  # tests answer without a server
    ) -> None:
        self._urls = list(urls)
        self._find_urls = find_urls
        self._max_age = max_age
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._lock = asyncio.Lock()
        self._read_at = -float("inf")
        self._load: Load | None = None

    async def read(self) -> Load | None:
        """Requests per LocalModel; None when no router answered (then nobody should scale on it)."""
        async with self._lock:  # one read at a time; the others take its result
            if time.monotonic() - self._read_at >= self._max_age:
                self._load = await self._read_all()
                self._read_at = time.monotonic()
            return self._load

    async def close(self) -> None:
        await self._client.aclose()

    async def _read_all(self) -> Load | None:
        urls = self._urls + (await self._find_urls() if self._find_urls else [])
        reports = await asyncio.gather(*(self._read_one(url) for url in urls))
        answered = [report for report in reports if report is not None]
        if not answered:
            return None
        total: Load = {}
        for report in answered:
            for model, active in report.items():
                total[model] = total.get(model, 0) + active
        return total

    async def _read_one(self, url: str) -> Load | None:
        try:
            response = await self._client.get(f"{url.rstrip('/')}/load")
            response.raise_for_status()
            report = LoadReport.model_validate_json(response.content)
        except httpx.HTTPError as error:
            log.warning("router %s: no load report (%s)", url, error)
            return None
        except ValidationError as error:  # no report this operator can read: as good as no answer
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            log.warning("router %s: malformed load report (%s: %s)", url, where, first["msg"])
            return None
        return {entry.local_model: float(entry.active) for entry in report.models if entry.local_model}
