"""A backend that crashes, as the kubelet reports it in its pod's status, reaches the LocalModel's status
and Events: the operator for real (kopf, its handlers, kubernetes_asyncio) against the API emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.operator.conftest import run_operator
from tests.integration.operator.test_reconcile import DEPLOYMENTS, SPEC, condition
from tests.support.api_server import Cluster, segfaulted_backend_status


def crash_events(cluster: Cluster) -> list[dict[str, Any]]:
    return [
        dict(event.raw)
        for (resource, _, _), event in cluster.server.objects.items()
        if resource.plural == "events" and not event.deleted and event.raw.get("reason") == "BackendCrashed"
    ]


@pytest.fixture
async def pod_labels(operator: Cluster) -> AsyncIterator[dict[str, str]]:
    """One LocalModel, reconciled; the labels its pods get (its Deployment's template's)."""
    await operator.apply_model("m", SPEC)
    deployment = await operator.wait_for(lambda: operator.child(DEPLOYMENTS, "m"), "a Deployment")
    yield {**deployment["spec"]["template"]["metadata"]["labels"], "pod-template-hash": "5d8f9c"}


async def test_a_segfaulting_backend_says_why_in_status_and_one_event_per_crash(
    operator: Cluster, pod_labels: dict[str, str]
) -> None:
    # Another model's pod crashes too: the operator lists m's pods by m's selector, so m does not tell it.
    other = {**pod_labels, "localmodel.dev/model": "other", "app.kubernetes.io/instance": "other"}
    await operator.set_pod("other-5d8f9c-aaaaa", other, segfaulted_backend_status(7))
    await operator.set_pod("m-5d8f9c-x2k4q", pod_labels, segfaulted_backend_status(1))

    def crashed() -> bool:
        ready = condition(operator.model("m"), "Ready")
        return ready.get("reason") == "BackendCrashed"

    await operator.wait_for(crashed, "Ready=False reason BackendCrashed")
    model = operator.model("m")
    ready, degraded = condition(model, "Ready"), condition(model, "Degraded")
    assert ready["status"] == "False" and model["status"]["summary"] == "Crashing"
    assert ready["message"].startswith(
        "The backend of pod m-5d8f9c-x2k4q (restarts: 1, in CrashLoopBackOff) was killed by SIGSEGV"
    )
    assert "--repack off" in ready["message"] and "Fatal Python error: Segmentation fault" in ready["message"]
    assert (degraded["status"], degraded["reason"]) == ("True", "BackendCrashed")
    # kopf posts Events from a queue of its own: the Event may land a moment after the status.
    (event,) = await operator.wait_for(lambda: crash_events(operator), "a BackendCrashed Event")
    assert (event["type"], event["involvedObject"]["kind"], event["involvedObject"]["name"]) == (
        "Warning",
        "LocalModel",
        "m",
    )
    assert "SIGSEGV" in event["message"] and "other" not in event["message"]

    # The same crash seen again (the container runs once more), and a Deployment event: no new Event,
    # and the status does not fall back to Loading.
    await operator.set_pod("m-5d8f9c-x2k4q", pod_labels, segfaulted_backend_status(1, waiting=False))
    await operator.set_deployment_status("m", {"replicas": 1, "updatedReplicas": 1, "observedGeneration": 1})
    await operator.wait_for(
        lambda: "CrashLoopBackOff" not in condition(operator.model("m"), "Ready")["message"], "running again"
    )
    await asyncio.sleep(1)
    assert len(crash_events(operator)) == 1
    assert condition(operator.model("m"), "Ready")["reason"] == "BackendCrashed"

    # The next crash is news.
    await operator.set_pod("m-5d8f9c-x2k4q", pod_labels, segfaulted_backend_status(2))
    await operator.wait_for(lambda: len(crash_events(operator)) == 2, "a second BackendCrashed Event")
    await operator.wait_for(
        lambda: "(restarts: 2, in CrashLoopBackOff)" in condition(operator.model("m"), "Ready")["message"],
        "the status tells of the second crash",
    )

    # Once it serves (say, started with `--repack off`), the model is Ready and nothing is degraded.
    await operator.set_pod(
        "m-5d8f9c-x2k4q", pod_labels, segfaulted_backend_status(2, waiting=False, ready=True)
    )
    await operator.set_deployment_status(
        "m", {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}
    )
    await operator.wait_for(
        lambda: condition(operator.model("m"), "Degraded").get("status") == "False", "recovered"
    )
    assert condition(operator.model("m"), "Ready")["status"] == "True"
    assert len(crash_events(operator)) == 2


async def test_a_restarted_operator_does_not_tell_a_told_crash_again(
    operator: Cluster, pod_labels: dict[str, str]
) -> None:
    await operator.set_pod("m-5d8f9c-x2k4q", pod_labels, segfaulted_backend_status(3))
    await operator.wait_for(lambda: crash_events(operator), "a BackendCrashed Event")
    await operator.wait_for(
        lambda: condition(operator.model("m"), "Ready").get("reason") == "BackendCrashed", "the status"
    )
    async with run_operator():
        await asyncio.sleep(2)  # a second operator resumes the LocalModel and lists the pods afresh
    assert len(crash_events(operator)) == 1
