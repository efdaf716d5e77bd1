"""kopf handlers: read the LocalModel, call the pure builders and planner, apply, write status. Thin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from localmodel.manifests import ManifestError, parse_manifest
from localmodel.sources import SourceError
from localmodel.spec import API_GROUP, MODEL_LABEL, LocalModel, LocalModelSpec
from localmodel_operator import metrics, startup  # noqa: F401  (registers the startup and cleanup handlers)
from localmodel_operator.accelerators import UnknownAcceleratorError
from localmodel_operator.autoscaler import ModelAutoscaler, Policy
from localmodel_operator.builders import build_children, model_source, selector_string, wanted_replicas
from localmodel_operator.conditions import (
    BACKEND_CRASHED,
    ConditionValue,
    Observed,
    Status,
    external_status,
    fits_condition,
    invalid_status,
    refused_status,
    status_for,
)
from localmodel_operator.fit_check import FitCheck, check_fit
from localmodel_operator.kube import Kube
from localmodel_operator.objects import KubeObject
from localmodel_operator.plan import plan
from localmodel_operator.pod_crashes import Crash, latest_crash
from localmodel_operator.router_load import RouterLoad
from localmodel_operator.settings import OperatorSettings

LOCALMODELS = (API_GROUP, "v1alpha1", "localmodels")
MANAGED = {"app.kubernetes.io/managed-by": "localmodel-operator"}
# The backend pods (builders.labels): the operator's, and each names its model.
BACKEND_PODS: dict[str, Any] = {**MANAGED, MODEL_LABEL: kopf.PRESENT}
log = logging.getLogger(__name__)


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
        fit = await _fit_check(model, memo)
        children = build_children(model, settings, fit)
    except (ManifestError, SourceError, UnknownAcceleratorError) as error:
        # Past the CRD schema but not servable: say so where users look, and do not retry.
        patch.status.update(
            {**invalid_status(name, "InvalidSpec", str(error), previous, _now()), "plan": None}
        )
        _note_fit(memo, (namespace, name), None)
        kopf.warn(body, reason="InvalidSpec", message=str(error))
        raise kopf.PermanentError(str(error)) from None
    _note_fit(memo, (namespace, name), fit)
    if fit is not None and fit.refused:
        # Written before the pods go, so that the pod events their deletion brings find it and leave it.
        refused = _refused(model, fit, previous)
        if _changed(_plain(body.get("status", {})), refused):
            await kube.patch_model_status(namespace, name, refused)
    for child in children.wanted:
        kopf.adopt(child, owner=body)
    existing = {kind: await kube.read(kind, namespace, child) for kind, child in children.names().items()}
    for step in plan(children.wanted, existing, children.unwanted, body.get("metadata", {}).get("uid")):
        if step.action == "keep":
            continue
        logger.info("%s %s: %s", step.action, step.name, step.reason)
        if step.action == "create":
            await kube.create(step.manifest)
        elif step.action == "delete":
            await kube.delete(step.manifest)
        else:
            await kube.apply(step.manifest)
        kopf.event(
            body, type="Normal", reason=f"{step.action.capitalize()}d", message=f"{step.name}: {step.reason}"
        )
    if fit is None:
        patch.status.update({**external_status(model, previous, _now()), "plan": None})
        return
    if fit.refused:
        # Not retried: the same spec on the same GPUs never fits (a new spec or new settings replan).
        kopf.warn(body, reason=fit.reason, message=fit.message)
        raise kopf.PermanentError(fit.message)
    # The Deployment as read before any write: its status is what the pods say (a new one has none yet);
    # the Deployment's and the pods' own events refresh the LocalModel's status from here on.
    status = await _status(memo, body, model, namespace, existing.get("Deployment"), previous, fit.condition)
    patch.status.update({**status, "plan": fit.plan_status()})


async def _fit_check(model: LocalModel, memo: Any) -> FitCheck | None:
    """The model's fit check; None for an external backend, which loads nothing of ours."""
    if model.spec.backend.address:
        return None
    return await check_fit(model, model_source(model), memo.settings, memo.model_headers)


def _refused(model: LocalModel, fit: FitCheck, previous: list[dict[str, Any]]) -> Status:
    return {**refused_status(model, fit.condition, previous, _now()), "plan": fit.plan_status()}


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A backend Deployment changed (pods became ready, a rollout moved): refresh its LocalModel's status."""
    model_name = body.get("metadata", {}).get("labels", {}).get(MODEL_LABEL)
    if event["type"] == "DELETED" or namespace is None or not model_name:
        return
    await refresh_status(memo, namespace, model_name, deployment=_plain(body))


@kopf.on.event("", "v1", "pods", labels=BACKEND_PODS)
async def pod_event(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A backend pod changed (its container crashed, restarted, became ready; the pod went): refresh its
    LocalModel's status. A CrashLoopBackOff changes only the pod, never the Deployment's counts."""
    model_name = body.get("metadata", {}).get("labels", {}).get(MODEL_LABEL)
    if namespace is None or not model_name:
        return
    await refresh_status(memo, namespace, model_name)


async def refresh_status(
    memo: Any, namespace: str, model_name: str, deployment: KubeObject | None = None
) -> None:
    """Read the LocalModel, compute its status from its Deployment (read here unless given) and its
    pods, and write it when a reader would see a change."""
    kube: Kube = memo.kube
    found = await kube.read_model(namespace, model_name)
    if found is None:
        _told_crashes(memo).pop((namespace, model_name), None)
        _fits(memo).pop((namespace, model_name), None)
        return  # the LocalModel is gone; garbage collection removes its children
    try:
        model = parse_manifest(found, f"LocalModel {namespace}/{model_name}")
    except ManifestError:
        return  # the LocalModel's own handler reports it
    if model.spec.backend.address:
        return  # an external backend: no pods of ours, and a status the reconcile handler wrote
    current = found.get("status") or {}
    previous = list(current.get("conditions", []))
    fits = _fits(memo).get((namespace, model_name)) or fits_condition(previous)
    if fits is not None and fits[0] == "False":
        return  # refused: no pods of its own, and the status the reconcile handler wrote stands
    if deployment is None:
        deployment = await kube.read("Deployment", namespace, model_name)
    body = kopf.Body(cast(kopf.RawBody, found))
    status = await _status(memo, body, model, namespace, deployment, previous, fits)
    if _changed(current, status):
        await kube.patch_model_status(namespace, model_name, status)


async def _status(
    memo: Any,
    body: kopf.Body,
    model: LocalModel,
    namespace: str,
    deployment: KubeObject | None,
    previous: list[dict[str, Any]],
    fits: ConditionValue | None,
) -> Status:
    """The status its Deployment and pods give a LocalModel (and `fits`, its Fits condition); a crash not
    told before becomes an Event."""
    kube: Kube = memo.kube
    selector = selector_string(model)
    crash = latest_crash(await kube.list_pods(namespace, selector))
    if crash is not None:
        _tell(_told_crashes(memo), (namespace, model.metadata.name), crash, previous, body)
    observed = Observed.from_deployment(deployment)
    return status_for(model, wanted_replicas(model), observed, selector, previous, _now(), crash, fits)


def _tell(
    told: dict[tuple[str, str], tuple[str, int]],
    key: tuple[str, str],
    crash: Crash,
    previous: list[dict[str, Any]],
    body: kopf.Body,
) -> None:
    """One Warning Event per crash. A pod's crash changes its Deployment's counts too, so two handlers
    see it at once, each with the status from before: what was told is remembered here first (no await
    between look and note), and in the status, for an operator that restarted since."""
    if told.get(key) == crash.key:
        return
    told[key] = crash.key
    if any(c.get("reason") == BACKEND_CRASHED and crash.told_in(c.get("message", "")) for c in previous):
        return
    log.warning("LocalModel %s/%s: %s", *key, crash.message)
    kopf.warn(body, reason=BACKEND_CRASHED, message=crash.message)


def _note_fit(memo: Any, key: tuple[str, str], fit: FitCheck | None) -> None:
    """Keep the model's Fits condition for its pods' status refreshes: one that read the LocalModel
    before this reconcile wrote its status would otherwise write the conditions back without it."""
    if fit is None:
        _fits(memo).pop(key, None)
    else:
        _fits(memo)[key] = fit.condition


def _fits(memo: Any) -> dict[tuple[str, str], ConditionValue]:
    """(namespace, LocalModel) → its Fits condition as the last reconcile found it."""
    fits: dict[tuple[str, str], ConditionValue] = memo.fit_conditions  # made at startup
    return fits


def _told_crashes(memo: Any) -> dict[tuple[str, str], tuple[str, int]]:
    """(namespace, LocalModel) → the crash last told of, as `Crash.key`."""
    told: dict[tuple[str, str], tuple[str, int]] = memo.told_crashes  # made at startup
    return told


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
        while not stopped:
            # A plain sleep, which kopf cancels when it stops daemons. `await stopped.wait(n)` runs a task
            # of its own, and one that times out while the operator exits is re-raised by kopf as the
            # operator's failure (TimeoutError): kopf's docs recommend cancellation for async daemons.
            await asyncio.sleep(settings.autoscaler.interval_seconds)
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
