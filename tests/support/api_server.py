"""A Kubernetes API server for tests: kmock's emulator, plus what the operator needs from a real one.

Used by the operator's integration tests and by `bench/operator_scale.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import kmock

from localmodel.spec import MODEL_LABEL

LOCALMODELS = "localmodel.dev/v1alpha1/localmodels"
ENDPOINTSLICES = "discovery.k8s.io/v1/endpointslices"
NAMESPACE = "ai"


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator plus what the operator relies on from a real API server: `generateName`, uid,
    resourceVersion, `generation` bumped on spec changes, and garbage collection of owned objects."""

    # The emulator keeps every request for assertions and matches each new one against that history,
    # so a request costs more the more came before. Tests keep them all; the scale benchmark keeps
    # only requests still being served (finished ones are then not there to assert on).
    keep_history: bool = attrs.field(default=True)
    _expiry: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    def expire_watches(self) -> None:
        """End every open watch with `410 Gone`, as an API server does when a watch's resourceVersion
        is too old (etcd compacted it); clients must list again."""
        self._expiry.set()
        self._expiry = asyncio.Event()

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        expired = asyncio.ensure_future(self._expiry.wait())
        events = self._watch_events(request)
        following: asyncio.Future[Any] | None = None
        try:
            while True:
                following = asyncio.ensure_future(anext(events))
                await asyncio.wait({following, expired}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    yield {"type": "ERROR", "object": GONE}
                    return
                try:
                    yield following.result()
                except StopAsyncIteration:
                    return
        finally:
            expired.cancel()
            if following is not None and not following.done():
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following
            await events.aclose()

    async def _watch_events(self, request: Any) -> AsyncIterator[Any]:
        """The objects there now, then every change. kmock's own watch takes its place in the change
        stream only after it has sent the objects, and loses a change made in between (a router that
        had just listed again never saw a slice turn ready). Here the place is taken first: a change
        in that window arrives both in the objects and as an event, which watchers apply harmlessly,
        as they do a real API server's replays."""
        yield b""  # the headers go out at once, as kmock's watch does
        bus = self._buses[request.resource]
        place = await bus.mark()
        try:
            for item in (await self._serve_list(request))["items"]:
                yield {"type": "ADDED", "object": item}
            async for event in bus.stream(since=place):
                metadata = event.get("object", {}).get("metadata", {})
                if request.namespace in (None, metadata.get("namespace")) and request.name in (
                    None,
                    metadata.get("name"),
                ):
                    yield event
        finally:
            await bus.unmark(place)

    async def _serve_list(self, request: Any) -> Any:
        listed = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector and request.resource is not None and request.resource.plural in SELECTED:
            listed["items"] = [item for item in listed["items"] if selects(selector, item)]
        return listed

    async def _handle(self, request: Any) -> Any:
        if request.action == kmock.action.LIST and request.params.get("watch", "").lower() in ("true", "1"):
            # Kubernetes parses booleans leniently; kubernetes_asyncio sends `watch=True`. (The request
            # is frozen, and kmock keeps it in its history: fix it in place.)
            object.__setattr__(request, "action", kmock.action.WATCH)
        data = request.data if isinstance(request.data, dict) else None
        if request.resource is not None and data is not None and request.action == kmock.action.CREATE:
            metadata = data.setdefault("metadata", {})
            if not metadata.get("name") and metadata.get("generateName"):
                metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("generation", 1)
            metadata["resourceVersion"] = str(next(_versions))
        elif request.resource is not None and data is not None and request.action == kmock.action.UPDATE:
            metadata = data.setdefault("metadata", {})
            metadata["resourceVersion"] = str(next(_versions))
            current = self._current(request)
            if (
                current is not None
                and "spec" in data
                and request.subresource is None
                and data["spec"] != {k: v for k, v in current.get("spec", {}).items() if k in data["spec"]}
            ):
                metadata["generation"] = current.get("metadata", {}).get("generation", 1) + 1
        # An object goes on DELETE, or on the PATCH that removes its last finalizer.
        before = self._current(request) if request.name is not None else None
        response = await super()._handle(request)
        if before is not None and self._current(request) is None:
            self._collect_garbage(before.get("metadata", {}).get("uid"))
        if not self.keep_history:
            self._requests.remove(request)
        return response

    def _current(self, request: Any) -> dict[str, Any] | None:
        try:
            found = self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return None
        return None if found.deleted else dict(found.raw)

    def _collect_garbage(self, owner_uid: str | None) -> None:
        for found in list(self.objects.values()):
            metadata = {} if found.deleted else found.raw.get("metadata", {})
            if any(owner.get("uid") == owner_uid for owner in metadata.get("ownerReferences", [])):
                found.delete()
                self._collect_garbage(metadata.get("uid"))


# Lists of these honour `labelSelector` as an API server does (the emulator ignores it): the operator
# lists a model's pods by its selector, and would see every model's pods if it sent a wrong one.
SELECTED = {"pods"}


def selects(selector: str, item: dict[str, Any]) -> bool:
    """Whether an equality-based label selector (`a=b,c!=d,e,!f`) selects `item`."""
    labels = item.get("metadata", {}).get("labels") or {}
    for requirement in selector.split(","):
        found = _REQUIREMENT.fullmatch(requirement.strip())
        if found is None or (found[1] and found[3]):
            raise NotImplementedError(f"label selector not emulated: {selector!r}")
        negated, key, operator, value = found.groups()
        if operator is None:
            matched = (key in labels) != bool(negated)
        else:
            matched = (labels.get(key) == value) == (operator != "!=")
        if not matched:
            return False
    return True


_REQUIREMENT = re.compile(r"(!?)([\w./-]+)(?:\s*(==|=|!=)\s*([\w.-]*))?")
_versions = itertools.count(1)
GONE = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "reason": "Expired",
    "message": "too old resource version",
    "code": 410,
}


class Cluster:
    """The API server, and what a test does to it as a user (kubectl) or as a cluster controller."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server

    def path(self, name: str) -> str:
        return f"/apis/localmodel.dev/v1alpha1/namespaces/{NAMESPACE}/localmodels/{name}"

    async def apply_model(self, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        }
        await self.server.post(f"/apis/localmodel.dev/v1alpha1/namespaces/{NAMESPACE}/localmodels", json=body)

    async def patch_model(self, name: str, spec: dict[str, Any]) -> None:
        await self.server.patch(self.path(name), json={"spec": spec})

    async def delete_model(self, name: str) -> None:
        await self.server.delete(self.path(name))

    async def set_deployment_status(self, name: str, status: dict[str, Any]) -> None:
        """What the Deployment controller (and kubelets) would report."""
        await self.server.patch(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/status", json={"status": status}
        )

    async def set_pod(self, name: str, labels: dict[str, str], status: dict[str, Any]) -> None:
        """A pod as the ReplicaSet controller creates it (`labels`: its template's), with `status` as its
        kubelet writes it."""
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        if self.child("v1/pods", name) is None:
            metadata = {"name": name, "namespace": NAMESPACE, "labels": labels}
            spec = {"containers": [{"name": "backend", "image": "localmodel/backend-llama-cpp"}]}
            await self.server.post(
                path, json={"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
            )
        await self.server.patch(f"{path}/{name}/status", json={"status": status})

    async def set_endpoint(
        self, model: str, address: str, ready: bool = True, port_name: str = "grpc"
    ) -> None:
        """What the EndpointSlice controller publishes for a pod of the Service `model` at `address` (one
        slice per address: loopback backends differ by port, pods by IP)."""
        host, port = address.rsplit(":", 1)
        name = f"{model}-{port}"
        endpoint_slice = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                # The controller copies the Service's labels, and names the Service.
                "labels": {MODEL_LABEL: model, "kubernetes.io/service-name": model},
            },
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": int(port), "protocol": "TCP"}],
            "endpoints": [{"addresses": [host], "conditions": {"ready": ready, "serving": ready}}],
        }
        path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
        if self.child(ENDPOINTSLICES, name) is None:
            await self.server.post(path, json=endpoint_slice)
        else:
            await self.server.patch(f"{path}/{name}", json=endpoint_slice)

    async def remove_endpoint(self, model: str, address: str) -> None:
        port = address.rsplit(":", 1)[1]
        await self.server.delete(
            f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{model}-{port}"
        )

    def model(self, name: str) -> dict[str, Any]:
        return dict(self.server.objects[LOCALMODELS, NAMESPACE, name].raw)

    def child(self, resource: str, name: str) -> dict[str, Any] | None:
        try:
            found = self.server.objects[resource, NAMESPACE, name]
        except KeyError:
            return None
        return None if found.deleted else dict(found.raw)

    def writes(self, resource: str) -> list[str]:
        """The write requests made to objects of `resource`: `METHOD name`."""
        # kmock's method is a str-mixin Enum whose str() is "method.POST": compare its value.
        return [
            f"{request.method.value} {request.name or request.data.get('metadata', {}).get('name')}"
            for request in self.server[kmock.resource(resource)]
            if request.method.value in ("POST", "PATCH", "PUT")
        ]

    async def wait_for(self, check: Any, what: str, timeout: float = 15.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (found := check()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not within {timeout:.0f}s: {what}")
            await asyncio.sleep(0.05)
        return found


# The log tail the kubelet keeps under FallbackToLogsOnError when llama.cpp's AMX kernels segfault.
SEGFAULT_LOG = (
    "load_tensors: CPU_REPACK model buffer size = 72.00 MiB\n"
    "Fatal Python error: Segmentation fault\n"
    '  File "/app/localmodel_llamacpp/engine.py", line 88 in load\n'
)


def segfaulted_backend_status(restarts: int, *, waiting: bool = True, ready: bool = False) -> dict[str, Any]:
    """A backend pod's status, as its kubelet writes it, after llama.cpp segfaulted `restarts` times:
    backing off before the next start, or running again."""
    last = {
        "terminated": {
            "exitCode": 139,
            "reason": "Error",
            "message": SEGFAULT_LOG,
            "startedAt": "2026-03-01T10:00:00Z",
            "finishedAt": f"2026-03-01T10:{restarts:02d}:05Z",
        }
    }
    state = (
        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}}
        if waiting
        else {"running": {"startedAt": f"2026-03-01T10:{restarts:02d}:15Z"}}
    )
    container = {
        "name": "backend",
        "image": "localmodel/backend-llama-cpp:0.1.0",
        "imageID": "docker.io/localmodel/backend-llama-cpp@sha256:" + "0" * 64,
        "ready": ready,
        "restartCount": restarts,
        "state": state,
        "lastState": last,
    }
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": str(ready)}],
        "containerStatuses": [container],
    }


def declare(server: ApiServer, folder: Path) -> tuple[Cluster, Path]:
    """Declare the resources the operator uses; write a kubeconfig for the server into `folder`."""
    server.resources.load_bundled()
    server.resources[LOCALMODELS] = {
        "kind": "LocalModel",
        "namespaced": True,
        "verbs": ["list", "watch", "get", "create", "update", "patch", "delete"],
        "subresources": ["status"],
    }
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
current-context: emulator
clusters: [{{name: emulator, cluster: {{server: "{server.url}"}}}}]
contexts: [{{name: emulator, context: {{cluster: emulator, user: tester}}}}]
users: [{{name: tester, user: {{token: test}}}}]
"""
    )
    return Cluster(server), kubeconfig
