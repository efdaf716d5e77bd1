"""LocalModels and EndpointSlices as last seen in the cluster, and the routing table they make. Pure.

A model's endpoints are the ready addresses in the EndpointSlices of its Service (named like the
LocalModel; the Service's labels, `localmodel.dev/model` among them, are copied onto its slices by the
EndpointSlice controller). A model with an external backend (`backend.address`) routes there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from localmodel.crashes import without_output
from localmodel.endpoint_slices import ready_addresses
from localmodel.spec import MODEL_LABEL, LocalModel
from localmodel_router.discovery import ModelRoute, RoutingTable
from localmodel_router.discovery.routes import created_at, route_for

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
GRPC_PORT_NAME = "grpc"


class ClusterState:
    def __init__(self) -> None:
        self._models: dict[Key, LocalModel] = {}
        self._unservable: set[Key] = set()
        self._crashing: dict[Key, str] = {}  # why the operator says a model's pods crash
        self._slices: dict[Key, dict[str, Any]] = {}
        self._conflicts: set[Key] = set()

    # --- LocalModels ---

    def replace_models(self, items: Iterable[dict[str, Any]], namespace: str | None = None) -> None:
        """A fresh listing (of one namespace, or all): what is not in it was deleted while no watch ran."""
        for key in [key for key in self._models if namespace in (None, key[0])]:
            del self._models[key]
        self._unservable = {key for key in self._unservable if namespace not in (None, key[0])}
        self._crashing = {key: why for key, why in self._crashing.items() if namespace not in (None, key[0])}
        for item in items:
            self.put_model(item)

    def put_model(self, item: dict[str, Any]) -> None:
        key = _key(item)
        # The status is the operator's to write and may grow fields: it never stops a model being routed.
        self._unservable.discard(key)
        self._crashing.pop(key, None)
        if _ready_reason(item.get("status"), "InvalidSpec") is not None:
            self._unservable.add(key)
        if (crash := _ready_reason(item.get("status"), "BackendCrashed")) is not None:
            self._crashing[key] = without_output(crash)
        try:
            self._models[key] = LocalModel.model_validate({**item, "status": None})
        except ValidationError as error:
            # The CRD schema refuses most of these; the operator reports the rest in the model's status.
            log.warning("ignoring LocalModel %s/%s: %s", *key, error.errors()[0]["msg"])
            self._models.pop(key, None)

    def delete_model(self, item: dict[str, Any]) -> None:
        self._models.pop(_key(item), None)
        self._unservable.discard(_key(item))
        self._crashing.pop(_key(item), None)

    # --- EndpointSlices ---

    def replace_slices(self, items: Iterable[dict[str, Any]], namespace: str | None = None) -> None:
        for key in [key for key in self._slices if namespace in (None, key[0])]:
            del self._slices[key]
        for item in items:
            self.put_slice(item)

    def put_slice(self, item: dict[str, Any]) -> None:
        # Filtered here too: a label selector is a request, and not every server (or test double) obeys.
        if MODEL_LABEL in (item.get("metadata", {}).get("labels") or {}):
            self._slices[_key(item)] = item

    def delete_slice(self, item: dict[str, Any]) -> None:
        self._slices.pop(_key(item), None)

    # --- the table ---

    def table(self) -> RoutingTable:
        endpoints = self._ready_endpoints()
        routes: dict[str, ModelRoute] = {}
        conflicts: set[Key] = set()
        # Oldest first: when two LocalModels claim one served name, the one that had it first keeps it.
        for key, model in sorted(self._models.items(), key=lambda item: (created_at(item[1]), item[0])):
            name = model.served_name
            if name in routes:
                conflicts.add(key)
                continue
            routes[name] = route_for(
                model,
                tuple(sorted(endpoints.get(key, ()))),
                servable=key not in self._unservable,
                crash=self._crashing.get(key),
            )
        for namespace, name in conflicts - self._conflicts:
            log.warning(
                "LocalModel %s/%s is not routed: another LocalModel already serves its name", namespace, name
            )
        self._conflicts = conflicts
        return RoutingTable(routes)

    def _ready_endpoints(self) -> dict[Key, set[str]]:
        found: dict[Key, set[str]] = {}
        for (namespace, _), item in self._slices.items():
            labels = item["metadata"]["labels"]
            model = labels[MODEL_LABEL]
            if labels.get(SERVICE_NAME_LABEL, model) != model:
                continue  # a slice of some other Service that copied the label
            found.setdefault((namespace, model), set()).update(
                # A slice with one port (a Service of the user's, say) is read on it, whatever its name.
                ready_addresses(item, GRPC_PORT_NAME, sole_port_fallback=True)
            )
        return found


def _key(item: dict[str, Any]) -> Key:
    metadata = item.get("metadata", {})
    return metadata.get("namespace") or "", metadata.get("name") or ""


def _ready_reason(status: Any, reason: str) -> str | None:
    """The message of a `Ready=False` condition with this reason, or None."""
    conditions = status.get("conditions") if isinstance(status, dict) else None
    for c in conditions or []:
        if isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "False":
            if c.get("reason") == reason:
                return str(c.get("message") or reason)
    return None
