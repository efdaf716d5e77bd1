from __future__ import annotations

from datetime import UTC, datetime

from localmodel.crashes import BackendExit
from localmodel.manifests import parse_manifest
from localmodel.spec import LocalModel
from localmodel_operator.conditions import (
    Observed,
    external_status,
    fits_condition,
    invalid_status,
    refused_status,
    status_for,
)
from localmodel_operator.pod_crashes import Crash

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


SEGFAULT = Crash(
    pod="m-5d8f9c-x2k4q",
    exit=BackendExit.from_container(139, message="Fatal Python error: Segmentation fault"),
    restarts=3,
    crash_loop=True,
)
ROLLED = {
    "metadata": {"generation": 1},
    "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2},
}


def test_a_crashing_backend_says_why_instead_of_loading() -> None:
    loading = status_for(model(), 2, Observed.from_deployment(ROLLED), "s", [], EARLIER)
    crashing = status_for(
        model(), 2, Observed.from_deployment(ROLLED), "s", loading["conditions"], NOW, SEGFAULT
    )
    assert by_type(crashing) == {
        "Ready": ("False", "BackendCrashed"),
        "ModelAvailable": ("Unknown", "NoReadyReplica"),
        "Progressing": ("False", "Complete"),
        "Degraded": ("True", "BackendCrashed"),
    }
    assert crashing["summary"] == "Crashing"
    messages = {c["type"]: c["message"] for c in crashing["conditions"]}
    assert messages["Ready"] == messages["Degraded"] == SEGFAULT.message
    assert (
        "was killed by SIGSEGV (signal 11)" in messages["Ready"] and "CrashLoopBackOff" in messages["Ready"]
    )
    # Not ready, and Degraded (ReplicasUnavailable), before: the reasons change, the transitions stay.
    assert by_type(loading)["Degraded"] == ("True", "ReplicasUnavailable")
    times = {c["type"]: c["lastTransitionTime"] for c in crashing["conditions"]}
    assert times["Ready"] == times["Degraded"] == "2026-01-01T00:00:00Z"


def test_ready_replicas_win_over_a_crash_which_degraded_still_tells() -> None:
    one_ready = {**ROLLED, "status": {**ROLLED["status"], "readyReplicas": 1}}
    status = status_for(model(), 2, Observed.from_deployment(one_ready), "s", [], NOW, SEGFAULT)
    assert by_type(status)["Ready"] == ("True", "ReplicasReady") and status["summary"] == "Ready"
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "BackendCrashed",
        SEGFAULT.message,
    )


def test_a_rollout_whose_new_pods_crash_is_degraded() -> None:
    rolling = {
        "metadata": {"generation": 2},
        "status": {"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1},
    }
    fine = status_for(model(), 1, Observed.from_deployment(rolling), "s", [], NOW)
    assert by_type(fine)["Degraded"] == ("False", "AsExpected")  # a rollout is not a fault...
    crashing = status_for(model(), 1, Observed.from_deployment(rolling), "s", [], NOW, SEGFAULT)
    assert by_type(crashing)["Degraded"] == ("True", "BackendCrashed")  # ...its new pods crashing is


def test_scaled_to_zero_ignores_a_crash_of_a_pod_on_its_way_out() -> None:
    status = status_for(model(minReplicas=0), 0, Observed(), "s", [], NOW, SEGFAULT)
    assert by_type(status)["Ready"] == ("False", "ScaledToZero")
    assert by_type(status)["Degraded"] == ("False", "AsExpected")


FITS = ("True", "Fits", "partial offload: 70 of 81 layers on 2 GPU(s)")


def test_the_fits_condition_rides_along_and_keeps_its_transition_time() -> None:
    status = status_for(model(), 1, Observed.from_deployment(None), "s", [], NOW, fits=FITS)
    assert by_type(status)["Fits"] == ("True", "Fits")
    before = [
        {"type": "Fits", "status": "True", "reason": "Fits", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]
    again = status_for(model(), 1, Observed.from_deployment(None), "s", before, NOW, fits=FITS)
    (fits,) = [c for c in again["conditions"] if c["type"] == "Fits"]
    assert (fits["message"], fits["lastTransitionTime"]) == (FITS[2], "2026-01-01T00:00:00Z")
    assert fits_condition(again["conditions"]) == FITS
    assert fits_condition([]) is None
    assert "Fits" not in by_type(status_for(model(), 1, Observed(), "s", [], NOW))  # not planned: none


def test_a_refused_spec_is_not_ready_degraded_and_does_not_fit() -> None:
    why = ("False", "DoesNotFit", "does not fit with 81 of 81 layers on 1 GPU(s): GPU0 needs 45.09 GiB of 24")
    status = refused_status(model(), why, [], NOW)
    assert by_type(status) == {
        "Ready": ("False", "DoesNotFit"),
        "Degraded": ("True", "DoesNotFit"),
        "Fits": ("False", "DoesNotFit"),
    }
    assert all(c["message"] == why[2] for c in status["conditions"])
    assert (status["summary"], status["replicas"], status["readyReplicas"]) == ("DoesNotFit", 0, 0)
