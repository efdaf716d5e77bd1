"""The operator, for real (kopf, its handlers, kubernetes_asyncio), against the Kubernetes API emulator."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from localmodel_operator.settings import BackendNetworkSettings, ModelCacheSettings, OperatorSettings
from tests.integration.operator.conftest import run_operator
from tests.support.api_server import Cluster

DEPLOYMENTS, SERVICES, CLAIMS = "apps/v1/deployments", "v1/services", "v1/persistentvolumeclaims"
SPEC: dict[str, Any] = {"model": {"url": "https://models.example/m.gguf"}, "replicas": 1}


def condition(model: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = model.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def template(cluster: Cluster) -> dict[str, Any]:
    deployment = cluster.child(DEPLOYMENTS, "m")
    assert deployment is not None
    spec: dict[str, Any] = deployment["spec"]["template"]
    return spec


def events(cluster: Cluster) -> list[tuple[str, str]]:
    return [
        (event.raw.get("reason"), event.raw.get("message"))
        for (resource, _, _), event in cluster.server.objects.items()
        if resource.plural == "events" and not event.deleted
    ]


@pytest.fixture
async def served(operator: Cluster) -> AsyncIterator[Cluster]:
    """One LocalModel, reconciled."""
    await operator.apply_model("m", SPEC)
    await operator.wait_for(lambda: condition(operator.model("m"), "Progressing"), "a first status")
    yield operator


async def test_create_makes_owned_children_and_a_truthful_status(served: Cluster) -> None:
    uid = served.model("m")["metadata"]["uid"]
    deployment, service = served.child(DEPLOYMENTS, "m"), served.child(SERVICES, "m")
    assert deployment is not None and service is not None
    for child in (deployment, service):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "LocalModel",
            "m",
            uid,
            True,
        )
    assert service["spec"]["ports"][0]["name"] == "grpc"
    status = served.model("m")["status"]
    assert (status["selector"], status["servedName"], status["summary"]) == (
        "localmodel.dev/model=m",
        "m",
        "Loading",
    )
    assert condition(served.model("m"), "Ready")["status"] == "False"
    assert condition(served.model("m"), "Progressing")["status"] == "True"
    assert ("Created", "Deployment/m: absent") in events(served)


async def test_ready_replicas_make_it_ready(served: Cluster) -> None:
    await served.set_deployment_status(
        "m",
        {
            "replicas": 1,
            "readyReplicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
            "observedGeneration": 1,
        },
    )
    await served.wait_for(lambda: condition(served.model("m"), "Ready").get("status") == "True", "Ready=True")
    model = served.model("m")
    assert (model["status"]["readyReplicas"], model["status"]["summary"]) == (1, "Ready")
    assert condition(model, "ModelAvailable")["status"] == "True"
    assert condition(model, "Progressing")["status"] == "False"


async def test_spec_change_rolls_the_pod_template(served: Cluster) -> None:
    before = template(served)
    await served.patch_model("m", {"backend": {"engine": {"contextSize": 1024}}})
    await served.wait_for(
        lambda: "--context-size" in template(served)["spec"]["containers"][0]["args"], "new args"
    )
    assert template(served) != before


async def test_replicas_change_scales_and_leaves_the_template_alone(served: Cluster) -> None:
    before = template(served)
    await served.patch_model("m", {"replicas": 3})
    await served.wait_for(lambda: served.child(DEPLOYMENTS, "m")["spec"]["replicas"] == 3, "3 replicas")  # type: ignore[index]
    assert template(served) == before


async def test_delete_removes_the_children(served: Cluster) -> None:
    await served.delete_model("m")
    await served.wait_for(
        lambda: served.child(DEPLOYMENTS, "m") is None and served.child(SERVICES, "m") is None, "gone"
    )


async def test_an_invalid_spec_is_reported_never_crashes(operator: Cluster) -> None:
    # Past the schema (the emulator has none) but not servable: GPUs of a vendor with no profile.
    await operator.apply_model("bad", {**SPEC, "resources": {"gpu": {"vendor": "acme"}}})
    await operator.wait_for(lambda: condition(operator.model("bad"), "Ready"), "a status")
    ready = condition(operator.model("bad"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.resources.gpu.vendor" in ready["message"]
    assert any(reason == "InvalidSpec" for reason, _ in events(operator))
    assert operator.child(DEPLOYMENTS, "bad") is None
    await operator.apply_model("good", SPEC)  # and the operator carries on
    await operator.wait_for(lambda: operator.child(DEPLOYMENTS, "good"), "the next model served")


async def test_a_restarted_operator_writes_nothing_that_is_right_already(served: Cluster) -> None:
    writes_before = served.writes(DEPLOYMENTS) + served.writes(SERVICES)
    assert "POST m" in writes_before  # what is counted is the operator's writes
    async with run_operator():
        await asyncio.sleep(2)  # a second operator resumes every LocalModel
    assert served.writes(DEPLOYMENTS) + served.writes(SERVICES) == writes_before


async def test_the_real_entry_point_reconciles(cluster: Cluster) -> None:
    """`localmodel operator` as users run it: a process, the kubeconfig from KUBECONFIG."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "localmodel.cli", "operator", stderr=asyncio.subprocess.PIPE
    )
    try:
        await cluster.apply_model("m", SPEC)
        await cluster.wait_for(
            lambda: cluster.child(DEPLOYMENTS, "m"), "a Deployment from the operator process", 30
        )
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-2000:]


async def test_a_per_model_cache_claim_is_created_and_owned(cluster: Cluster) -> None:
    settings = OperatorSettings(model_cache=ModelCacheSettings(kind="pvc", size="5Gi"))
    async with run_operator(settings):
        await cluster.apply_model("m", SPEC)
        claim = await cluster.wait_for(
            lambda: cluster.child("v1/persistentvolumeclaims", "m-model-cache"), "a claim"
        )
        await cluster.wait_for(lambda: cluster.child(DEPLOYMENTS, "m"), "a Deployment")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["metadata"]["ownerReferences"][0]["name"] == "m"
    volumes = template(cluster)["spec"]["volumes"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "m-model-cache"}} in volumes


async def test_switching_to_an_external_backend_deletes_the_deployment_and_service(served: Cluster) -> None:
    await served.wait_for(lambda: served.child(DEPLOYMENTS, "m") and served.child(SERVICES, "m"), "children")
    await served.patch_model("m", {"backend": {"address": "llm.example:50051"}})
    await served.wait_for(
        lambda: served.child(DEPLOYMENTS, "m") is None and served.child(SERVICES, "m") is None, "both deleted"
    )
    await served.wait_for(
        lambda: condition(served.model("m"), "Ready").get("reason") == "ExternalBackend", "Ready, external"
    )
    deleted = [message for reason, message in events(served) if reason == "Deleted"]
    assert sorted(deleted) == [
        f"{kind}/m: not wanted: the model is served by its external backend llm.example:50051"
        for kind in ("Deployment", "Service")
    ]


async def test_a_cache_claim_no_longer_wanted_is_deleted(cluster: Cluster) -> None:
    settings = OperatorSettings(model_cache=ModelCacheSettings(kind="pvc", size="5Gi"))
    async with run_operator(settings):
        await cluster.apply_model("m", SPEC)
        await cluster.wait_for(lambda: cluster.child(CLAIMS, "m-model-cache"), "a claim")
        # The file is now read from a claim of the user's: nothing is downloaded, no cache is wanted.
        await cluster.patch_model("m", {"model": {"url": "pvc://models/m.gguf"}})
        await cluster.wait_for(lambda: cluster.child(CLAIMS, "m-model-cache") is None, "the claim deleted")
        # The claim goes first, then the Deployment is updated: wait for both.
        await cluster.wait_for(
            lambda: "m-model-cache" not in str(template(cluster)), "the pods off the claim"
        )
        volumes = template(cluster)["spec"]["volumes"]
    users_claim = {"claimName": "models", "readOnly": True}
    assert {"name": "model-source", "persistentVolumeClaim": users_claim} in volumes
    assert "m-model-cache" not in str(volumes)


async def test_a_network_policy_admits_only_the_routers_and_goes_with_the_setting(cluster: Cluster) -> None:
    policies = "networking.k8s.io/v1/networkpolicies"
    routers = {"app.kubernetes.io/component": "router"}
    network = BackendNetworkSettings(enabled=True, router_pod_labels=routers)
    async with run_operator(OperatorSettings(network_policy=network)):
        await cluster.apply_model("m", SPEC)
        policy = await cluster.wait_for(lambda: cluster.child(policies, "m"), "a NetworkPolicy")
    assert policy["metadata"]["ownerReferences"][0]["name"] == "m"
    assert policy["spec"]["ingress"][0]["from"][0]["podSelector"] == {"matchLabels": routers}
    async with run_operator(OperatorSettings()):  # turned off: the next reconcile deletes it
        await cluster.patch_model("m", {"replicas": 2})
        await cluster.wait_for(lambda: cluster.child(policies, "m") is None, "the NetworkPolicy deleted")
