"""Pure: what a LocalModel's children say → its status (conditions, replica counts, one-word summary).

Conditions keep their lastTransitionTime while their status stays the same, so that `kubectl describe`
shows when a model became ready, not when the operator last looked. `Fits` comes from the fit check at
reconcile (fit_check.py) and is passed through as it was when the pods' changes refresh the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from localmodel.spec import Condition, ConditionType, LocalModel, LocalModelStatus
from localmodel_operator.pod_crashes import Crash

Status = dict[str, Any]
BACKEND_CRASHED = "BackendCrashed"
# A condition's status, reason and message.
ConditionValue = tuple[str, str, str]


@dataclass(frozen=True)
class Observed:
    """The Deployment's status as the operator last read it (all zero before it exists)."""

    replicas: int = 0
    ready: int = 0
    updated: int = 0
    available: int = 0
    generation_seen: bool = True  # the Deployment controller has seen the latest spec

    @classmethod
    def from_deployment(cls, deployment: dict[str, Any] | None) -> Observed:
        if deployment is None:
            return cls(generation_seen=False)
        status = deployment.get("status") or {}
        generation = deployment.get("metadata", {}).get("generation")
        return cls(
            replicas=status.get("replicas", 0),
            ready=status.get("readyReplicas", 0),
            updated=status.get("updatedReplicas", 0),
            available=status.get("availableReplicas", 0),
            generation_seen=generation is None or status.get("observedGeneration", 0) >= generation,
        )


def status_for(
    model: LocalModel,
    wanted: int,
    observed: Observed,
    selector: str,
    previous: list[dict[str, Any]],
    now: datetime,
    crash: Crash | None = None,
    fits: ConditionValue | None = None,
) -> Status:
    """The status of a LocalModel served by a Deployment with `wanted` replicas, whose backend pods
    last crashed as `crash` says (None: none is crashing); `fits`: its Fits condition, if planned."""
    rolling = not observed.generation_seen or observed.updated < wanted or observed.replicas > wanted
    crash = crash if wanted > 0 else None  # a pod still stopping after a scale to zero is no news
    if wanted == 0:
        ready = ("False", "ScaledToZero", "No replicas; the first request starts one.")
        summary = "ScaledToZero"
    elif observed.ready > 0:
        # Ready replicas serve, whatever the others do; Degraded tells of the crash.
        ready = ("True", "ReplicasReady", f"{observed.ready}/{wanted} replicas ready.")
        summary = "Ready"
    elif crash is not None:
        ready = ("False", BACKEND_CRASHED, crash.message)
        summary = "Crashing"
    else:
        ready = ("False", "Loading", f"0/{wanted} replicas ready: fetching or loading the model.")
        summary = "Loading"
    conditions = [
        (ConditionType.READY, *ready),
        (
            ConditionType.MODEL_AVAILABLE,
            *(
                ("True", "Loaded", "A replica has loaded the model.")
                if observed.ready > 0
                else ("Unknown", "NoReadyReplica", "No replica has loaded the model yet.")
            ),
        ),
        (
            ConditionType.PROGRESSING,
            *(
                ("True", "RollingOut", f"{observed.updated}/{wanted} replicas run the latest spec.")
                if rolling
                else ("False", "Complete", "Every replica runs the latest spec.")
            ),
        ),
        (ConditionType.DEGRADED, *_degraded(wanted, observed, rolling, crash)),
    ]
    if fits is not None:
        conditions.append((ConditionType.FITS, *fits))
    return _status(model, conditions, previous, now, summary, observed.replicas, observed.ready, selector)


def _degraded(wanted: int, observed: Observed, rolling: bool, crash: Crash | None) -> tuple[str, str, str]:
    if crash is not None:
        return ("True", BACKEND_CRASHED, crash.message)  # a rollout whose new pods crash, too
    if 0 < wanted and observed.ready < wanted and not rolling:
        return ("True", "ReplicasUnavailable", f"{observed.ready}/{wanted} replicas ready.")
    return ("False", "AsExpected", "")


def invalid_status(
    model_name: str, reason: str, message: str, previous: list[dict[str, Any]], now: datetime
) -> Status:
    """A spec the operator cannot serve: Ready and Degraded say why; nothing else is claimed."""
    conditions = [
        Condition(type=ConditionType.READY, status="False", reason=reason, message=message),
        Condition(type=ConditionType.DEGRADED, status="True", reason=reason, message=message),
    ]
    return {
        "conditions": [_dump(c, previous, now) for c in conditions],
        "summary": "Invalid",
        "servedName": model_name,
    }


def refused_status(
    model: LocalModel, fits: ConditionValue, previous: list[dict[str, Any]], now: datetime
) -> Status:
    """A spec the fit check refuses: no pods (so no replicas), and Ready, Degraded and Fits say why."""
    _, reason, message = fits
    conditions = [
        (ConditionType.READY, "False", reason, message),
        (ConditionType.DEGRADED, "True", reason, message),
        (ConditionType.FITS, *fits),
    ]
    return _status(model, conditions, previous, now, reason, 0, 0, None)


def fits_condition(previous: list[dict[str, Any]]) -> ConditionValue | None:
    """The Fits condition as the reconcile handler last wrote it (None: there is none)."""
    found = next((c for c in previous if c.get("type") == ConditionType.FITS.value), None)
    if found is None:
        return None
    return found.get("status", "Unknown"), found.get("reason", ""), found.get("message", "")


def external_status(model: LocalModel, previous: list[dict[str, Any]], now: datetime) -> Status:
    message = f"Routed to the external backend {model.spec.backend.address}."
    conditions = [
        (ConditionType.READY, "True", "ExternalBackend", message),
        (ConditionType.MODEL_AVAILABLE, "True", "ExternalBackend", message),
        (ConditionType.PROGRESSING, "False", "ExternalBackend", "Nothing to roll out."),
        (ConditionType.DEGRADED, "False", "ExternalBackend", ""),
    ]
    return _status(model, conditions, previous, now, "External", 0, 0, None)


def _status(
    model: LocalModel,
    conditions: list[tuple[ConditionType, str, str, str]],
    previous: list[dict[str, Any]],
    now: datetime,
    summary: str,
    replicas: int,
    ready: int,
    selector: str | None,
) -> Status:
    generation = model.metadata.model_extra.get("generation") if model.metadata.model_extra else None
    built = [
        Condition(type=kind, status=state, reason=reason, message=message, observed_generation=generation)  # type: ignore[arg-type]
        for kind, state, reason, message in conditions
    ]
    status = LocalModelStatus(
        replicas=replicas,
        ready_replicas=ready,
        selector=selector,
        observed_generation=generation,
        served_name=model.served_name,
        summary=summary,
    )
    dumped = status.model_dump(by_alias=True, exclude_none=True, exclude={"conditions"})
    return {**dumped, "conditions": [_dump(condition, previous, now) for condition in built]}


def _dump(condition: Condition, previous: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    before = next((c for c in previous if c.get("type") == condition.type.value), None)
    unchanged = before is not None and before.get("status") == condition.status
    when = before.get("lastTransitionTime") if unchanged and before else None
    stamped = condition.model_copy(update={"last_transition_time": when or _rfc3339(now)})
    return stamped.model_dump(by_alias=True, exclude_none=True, mode="json")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
