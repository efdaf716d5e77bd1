from __future__ import annotations

from datetime import UTC, datetime

from localmodel.manifests import parse_manifest
from localmodel.spec import LocalModel
from localmodel_operator.conditions import Observed, external_status, invalid_status, status_for

EARLIER = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 2, tzinfo=UTC)


def model(**spec: object) -> LocalModel:
    document = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "m", "generation": 3},
        "spec": {"model": {"url": "hf://o/r/m.gguf"}, **spec},
    }
    return parse_manifest(document, "test")


def by_type(status: dict[str, object]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}  # type: ignore[attr-defined,index]


def test_a_new_deployment_is_loading_and_progressing() -> None:
    status = status_for(model(), 1, Observed.from_deployment(None), "sel", [], NOW)
    assert by_type(status) == {
        "Ready": ("False", "Loading"),
        "ModelAvailable": ("Unknown", "NoReadyReplica"),
        "Progressing": ("True", "RollingOut"),
        "Degraded": ("False", "AsExpected"),
    }
    assert (status["summary"], status["observedGeneration"], status["selector"]) == ("Loading", 3, "sel")


def test_ready_complete_then_degraded_when_a_replica_is_lost() -> None:
    rolled = {
        "metadata": {"generation": 2},
        "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2},
    }
    ready = status_for(
        model(),
        2,
        Observed.from_deployment({**rolled, "status": {**rolled["status"], "readyReplicas": 2}}),
        "s",
        [],
        EARLIER,
    )
    assert (
        by_type(ready)["Ready"] == ("True", "ReplicasReady") and by_type(ready)["Progressing"][0] == "False"
    )
    lost = status_for(
        model(),
        2,
        Observed.from_deployment({**rolled, "status": {**rolled["status"], "readyReplicas": 1}}),
        "s",
        ready["conditions"],
        NOW,
    )  # type: ignore[arg-type]
    assert by_type(lost)["Degraded"] == ("True", "ReplicasUnavailable")
    times = {c["type"]: c["lastTransitionTime"] for c in lost["conditions"]}  # type: ignore[attr-defined]
    assert times["Ready"] == "2026-01-01T00:00:00Z"  # still True: the transition time stays
    assert times["Degraded"] == "2026-01-02T00:00:00Z"  # changed now


def test_scaled_to_zero_external_and_invalid() -> None:
    zero = status_for(model(minReplicas=0), 0, Observed(), "s", [], NOW)
    assert by_type(zero)["Ready"] == ("False", "ScaledToZero") and zero["summary"] == "ScaledToZero"
    external = external_status(model(backend={"address": "box:50051"}), [], NOW)
    assert by_type(external)["Ready"] == ("True", "ExternalBackend")
    invalid = invalid_status("m", "InvalidSpec", "spec.x: bad", [], NOW)
    assert by_type(invalid) == {"Ready": ("False", "InvalidSpec"), "Degraded": ("True", "InvalidSpec")}
