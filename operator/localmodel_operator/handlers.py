"""kopf handlers: read the LocalModel, call the pure builders and planner, apply, write status. Thin."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from localmodel.manifests import ManifestError, parse_manifest
from localmodel.sources import SourceError
from localmodel.spec import API_GROUP, MODEL_LABEL, LocalModel, LocalModelSpec
from localmodel_operator import metrics, startup  # noqa: F401  (registers the startup and cleanup handlers)
from localmodel_operator.accelerators import UnknownAcceleratorError
from localmodel_operator.autoscaler import ModelAutoscaler, Policy
from localmodel_operator.builders import (
    build_cache_claim,
    build_deployment,
    build_service,
    selector_string,
    wanted_replicas,
)
from localmodel_operator.conditions import Observed, external_status, invalid_status, status_for
from localmodel_operator.kube import Kube
from localmodel_operator.plan import plan
from localmodel_operator.router_load import RouterLoad
from localmodel_operator.settings import OperatorSettings

LOCALMODELS = (API_GROUP, "v1alpha1", "localmodels")
MANAGED = {"app.kubernetes.io/managed-by": "localmodel-operator"}


@kopf.on.resume(*LOCALMODELS)
@kopf.on.create(*LOCALMODELS)
@kopf.on.update(*LOCALMODELS)
async def localmodel_reconcile(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    kube: Kube = memo.kube
    settings: OperatorSettings = memo.settings
    namespace = namespace or "default"  # LocalModels are namespaced; kopf types allow None for others
    previous = list(body.get("status", {}).get("conditions", []))
    try:
        model = parse_manifest(_plain(body), f"LocalModel {namespace}/{name}")
        if model.spec.backend.address:
            patch.status.update(external_status(model, previous, _now()))
            return
        children = _children(model, settings)
    except (ManifestError, SourceError, UnknownAcceleratorError) as error:
        # Past the CRD schema but not servable: say so where users look, and do not retry.
        patch.status.update(invalid_status(name, "InvalidSpec", str(error), previous, _now()))
        kopf.warn(body, reason="InvalidSpec", message=str(error))
        raise kopf.PermanentError(str(error)) from None
    for child in children:
        kopf.adopt(child, owner=body)
    existing = {
        child["kind"]: await kube.read(child["kind"], namespace, name_of(child)) for child in children
    }
    for step in plan(children, existing):
        if step.action == "keep":
            continue
        logger.info("%s %s: %s", step.action, step.name, step.reason)
        if step.action == "create":
            await kube.create(step.manifest)
        else:
            await kube.apply(step.manifest)
        kopf.event(
            body, type="Normal", reason=f"{step.action.capitalize()}d", message=f"{step.name}: {step.reason}"
        )
    # The Deployment as read before any write: its status is what the pods say (a new one has none yet);
    # the Deployment's own events refresh the LocalModel's status from here on.
    observed = Observed.from_deployment(existing.get("Deployment"))
    status = status_for(model, wanted_replicas(model), observed, selector_string(model), previous, _now())
    patch.status.update(status)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A backend Deployment changed (pods became ready, a rollout moved): refresh its LocalModel's status."""
    if event["type"] == "DELETED" or namespace is None:
        return
    model_name = body.get("metadata", {}).get("labels", {}).get(MODEL_LABEL)
    kube: Kube = memo.kube
    found = await kube.read_model(namespace, model_name) if model_name else None
    if found is None:
        return  # the LocalModel is gone; garbage collection removes the Deployment
    try:
        model = parse_manifest(found, f"LocalModel {namespace}/{model_name}")
    except ManifestError:
        return  # the LocalModel's own handler reports it
    previous = list((found.get("status") or {}).get("conditions", []))
    status = status_for(
        model,
        wanted_replicas(model),
        Observed.from_deployment(_plain(body)),
        selector_string(model),
        previous,
        _now(),
    )
    if _changed(found.get("status") or {}, status):
        await kube.patch_model_status(namespace, model.metadata.name, status)


@kopf.daemon(*LOCALMODELS, cancellation_timeout=5.0)
async def localmodel_autoscale(
    stopped: kopf.DaemonStopped, body: kopf.Body, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    """Sample the model's load at the routers every interval; set replicas when the autoscaler says.
    Daemons stop while kopf's peering pauses this operator, so only the active operator scales."""
    router_load: RouterLoad | None = memo.get("router_load")
    if router_load is None or namespace is None:
        return  # no routers to read: replicas are left to the spec, an HPA or KEDA
    settings: OperatorSettings = memo.settings
    kube: Kube = memo.kube
    scaler = ModelAutoscaler()
    labels = {"namespace": namespace, "model": name}
    try:
        while not await stopped.wait(settings.autoscaler.interval_seconds):
            try:
                spec = LocalModelSpec.model_validate(_plain(body.get("spec", {})))  # a live view: current
            except ValidationError:
                continue  # the reconcile handler reports it
            policy = Policy.of(spec)
            load = await router_load.read()
            if policy is None or load is None:
                continue  # not scaled by us, or no router answered: never scale blind
            current = spec.initial_replicas
            active = load.get(f"{namespace}/{name}", 0.0)
            wanted = scaler.decide(policy, time.monotonic(), active, current)
            metrics.MODEL_LOAD.labels(**labels).set(active)
            metrics.WANTED_REPLICAS.labels(**labels).set(scaler.wanted or 0)
            if wanted is None or wanted == current:
                continue
            direction = "up" if wanted > current else "down"
            await kube.scale_model(namespace, name, wanted)
            metrics.SCALE_EVENTS.labels(**labels, direction=direction).inc()
            message = f"{current} → {wanted} replicas (load {active:g}, target {policy.target} per replica)"
            kopf.event(body, type="Normal", reason=f"Scaled{direction.capitalize()}", message=message)
    finally:
        for gauge in (metrics.MODEL_LOAD, metrics.WANTED_REPLICAS):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)


def _children(model: LocalModel, settings: OperatorSettings) -> list[dict[str, Any]]:
    claim = build_cache_claim(model, settings)
    return [*([claim] if claim else []), build_deployment(model, settings), build_service(model, settings)]


def name_of(manifest: dict[str, Any]) -> str:
    name: str = manifest["metadata"]["name"]
    return name


def _changed(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether writing `new` changes anything a reader sees (transition times stay while nothing moves)."""
    return any(current.get(key) != value for key, value in new.items())


def _plain(body: Any) -> dict[str, Any]:
    """kopf's read-only body views as plain dicts (what pydantic and the builders take)."""
    if isinstance(body, dict) or hasattr(body, "items"):
        return {key: _plain(value) for key, value in body.items()}
    if isinstance(body, list):
        return [_plain(item) for item in body]  # type: ignore[return-value]
    return body  # type: ignore[no-any-return]


def _now() -> datetime:
    return datetime.now(UTC)


logging.getLogger("kopf.objects").setLevel(logging.INFO)
