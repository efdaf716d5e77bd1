"""Kubernetes discovery: LocalModels and their EndpointSlices, watched. The router's only Kubernetes client.

Each resource is listed, then watched from the listing's resourceVersion. A watch that expires (410 Gone)
is listed again at once; any other failure (API server restarting, network) is retried with backoff. A
fresh listing replaces what was known, so objects deleted while no watch ran disappear too. Every event
publishes a new routing table at once.

A request for a model scaled to zero asks for one replica through the LocalModel's scale subresource
(the only write the router's RBAC allows); the operator does the rest.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from localmodel import kubeclient
from localmodel.spec import API_GROUP, MODEL_LABEL
from localmodel_router import metrics
from localmodel_router.discovery import PublishedTable, RoutingTable
from localmodel_router.discovery.cluster_state import ClusterState
from localmodel_router.errors import OverloadedError

log = logging.getLogger(__name__)

VERSION, PLURAL = "v1alpha1", "localmodels"
WATCH_SECONDS = 300  # the server ends each watch after this; it is resumed from the last resourceVersion
BACKOFF_SECONDS = (0.5, 1, 2, 5, 10, 30)
ASK_AGAIN_SECONDS = 10.0  # one scale-up request per model in this time, however many requests are held


@dataclass
class _Watched:
    """One resource to follow: how to list it, and where its objects go."""

    resource: str
    namespace: str | None  # None: every namespace
    list_call: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    replace: Callable[[list[dict[str, Any]], str | None], None]
    put: Callable[[dict[str, Any]], None]
    delete: Callable[[dict[str, Any]], None]


class KubernetesDiscovery:
    changes = True

    def __init__(
        self,
        namespaces: Sequence[str] = (),
        sync_timeout: float = 30.0,
        connect: Callable[[], Awaitable[client.ApiClient]] = kubeclient.connect,
    ) -> None:
        self._namespaces = list(namespaces)  # empty: every namespace
        self._sync_timeout = sync_timeout
        self._connect = connect
        self._state = ClusterState()
        self._table = PublishedTable()
        self._api: client.ApiClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._asked: dict[str, float] = {}
        self._published_models: set[str] = set()

    def table(self) -> RoutingTable:
        return self._table.get()

    async def wait_for_change(self) -> None:
        await self._table.wait_for_next()

    async def start(self) -> None:
        """Start watching; return once everything was listed once (or after `sync_timeout`: the router
        then starts with what it has, and /readyz says whether anything is routable)."""
        self._api = await self._connect()
        synced = []
        for watched in self._watches(self._api):
            listed = asyncio.Event()
            synced.append(listed)
            self._tasks.append(asyncio.create_task(self._follow(watched, listed), name=watched.resource))
        try:
            async with asyncio.timeout(self._sync_timeout):
                await asyncio.gather(*(event.wait() for event in synced))
        except TimeoutError:
            log.warning(
                "Kubernetes discovery: not everything listed after %.0fs; serving what is known",
                self._sync_timeout,
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._api is not None:
            await self._api.close()

    async def request_replica(self, model: str) -> None:
        """Scale a model at zero to one replica (the operator's autoscaler takes it from there)."""
        route = self.table().get(model)
        if route is None or route.resource is None or self._api is None:
            return
        now = time.monotonic()
        if now - self._asked.get(route.name, -ASK_AGAIN_SECONDS) < ASK_AGAIN_SECONDS:
            return  # asked already; the held requests wait for the same replica
        self._asked[route.name] = now
        namespace, name = route.resource.split("/", 1)
        try:
            await client.CustomObjectsApi(self._api).patch_namespaced_custom_object_scale(
                API_GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"spec": {"replicas": 1}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            self._asked.pop(route.name, None)
            log.error("could not scale %s up from zero: %s %s", route.resource, error.status, error.reason)
            raise OverloadedError(
                f"model '{route.name}' is scaled to zero and could not be started ({error.reason}); "
                "retry later",
                retry_after=10,
            ) from None
        metrics.SCALE_REQUESTS.labels(route.name).inc()
        log.info("asked for a replica of %s (scaled to zero, a request is waiting)", route.resource)

    def _watches(self, api: client.ApiClient) -> list[_Watched]:
        custom, discovery = client.CustomObjectsApi(api), client.DiscoveryV1Api(api)
        state = self._state
        # Slices of our Services only (a Service's labels are copied onto its slices); the state
        # filters them again.
        selector = {"label_selector": MODEL_LABEL}
        watches = []
        namespaces: list[str | None] = [*self._namespaces] or [None]
        for namespace in namespaces:
            models: tuple[Callable[..., Awaitable[Any]], tuple[str, ...]]
            slices: tuple[Callable[..., Awaitable[Any]], tuple[str, ...]]
            if namespace is None:
                models = custom.list_cluster_custom_object, (API_GROUP, VERSION, PLURAL)
                slices = discovery.list_endpoint_slice_for_all_namespaces, ()
            else:
                models = custom.list_namespaced_custom_object, (API_GROUP, VERSION, namespace, PLURAL)
                slices = discovery.list_namespaced_endpoint_slice, (namespace,)
            where = f" in {namespace}" if namespace else ""
            watches += [
                _Watched(
                    f"localmodels{where}",
                    namespace,
                    models[0],
                    models[1],
                    {},
                    state.replace_models,
                    state.put_model,
                    state.delete_model,
                ),
                _Watched(
                    f"endpointslices{where}",
                    namespace,
                    slices[0],
                    slices[1],
                    selector,
                    state.replace_slices,
                    state.put_slice,
                    state.delete_slice,
                ),
            ]
        return watches

    async def _follow(self, watched: _Watched, listed: asyncio.Event) -> None:
        """List, then watch from there; again after an expiry or (with backoff) a failure. Forever."""
        failures = 0
        while True:
            try:
                listing = self._plain(await watched.list_call(*watched.args, **watched.kwargs))
                watched.replace(listing.get("items") or [], watched.namespace)
                self._publish()
                listed.set()
                version = (listing.get("metadata") or {}).get("resourceVersion")
                while True:  # resumed after each server-side timeout; left for a relist on 410
                    stream = watch.Watch()
                    async with stream:
                        async for event in stream.stream(
                            watched.list_call,
                            *watched.args,
                            **watched.kwargs,
                            resource_version=version,
                            timeout_seconds=WATCH_SECONDS,
                            allow_watch_bookmarks=True,
                            _request_timeout=WATCH_SECONDS + 30,
                        ):
                            failures = 0
                            self._apply(watched, event)
                    version = stream.resource_version or version
            except asyncio.CancelledError:
                raise
            except ApiException as error:
                if error.status == 410:
                    metrics.WATCH_RESTARTS.labels(watched.resource, "expired").inc()
                    log.info("watch of %s expired; listing again", watched.resource)
                    continue
                failures += 1
                await self._back_off(watched, failures, f"{error.status} {error.reason}")
            except Exception as error:  # the API server restarting, the network, a bad response
                failures += 1
                await self._back_off(watched, failures, repr(error))

    def _apply(self, watched: _Watched, event: dict[str, Any]) -> None:
        kind, item = event.get("type"), event.get("raw_object")
        if not isinstance(item, dict) or kind not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only moves the resourceVersion (the watch keeps it)
        (watched.delete if kind == "DELETED" else watched.put)(item)
        self._publish()

    def _publish(self) -> None:
        table = self._state.table()
        self._table.publish(table)
        for name, route in table.routes.items():
            metrics.ENDPOINTS.labels(name).set(len(route.endpoints))
        for gone in self._published_models - set(table.routes):
            metrics.ENDPOINTS.remove(gone)
        self._published_models = set(table.routes)

    async def _back_off(self, watched: _Watched, failures: int, reason: str) -> None:
        metrics.WATCH_RESTARTS.labels(watched.resource, "error").inc()
        delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1] * random.uniform(0.8, 1.2)
        log.warning("watching %s failed (%s); again in %.1fs", watched.resource, reason, delay)
        await asyncio.sleep(delay)

    def _plain(self, response: Any) -> dict[str, Any]:
        """Typed client objects (EndpointSlices) as the API's camelCase dicts; custom objects are already."""
        if isinstance(response, dict):
            return response
        assert self._api is not None
        plain: dict[str, Any] = self._api.sanitize_for_serialization(response)
        return plain
