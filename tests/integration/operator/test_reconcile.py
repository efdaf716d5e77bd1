"""The operator, for real, against the Kubernetes API emulator."""

from __future__ import annotations

from typing import Any

from tests.integration.operator.conftest import Cluster

SPEC: dict[str, Any] = {"model": {"url": "https://models.example/m.gguf"}, "replicas": 1}


def condition(model: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in model.get("status", {}).get("conditions", []) if c["type"] == kind), None)


async def test_create_makes_an_owned_deployment_and_service_and_says_progressing(operator: Cluster) -> None:
    await operator.apply_model("m", SPEC)
    deployment = await operator.wait_for(lambda: operator.child("apps/v1/deployments", "m"), "a Deployment")
    service = await operator.wait_for(lambda: operator.child("v1/services", "m"), "a Service")
    uid = operator.model("m")["metadata"]["uid"]
    for child in (deployment, service):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "LocalModel",
            "m",
            uid,
            True,
        )
    assert service["spec"]["ports"][0]["name"] == "grpc"
    status = await operator.wait_for(
        lambda: operator.model("m").get("status", {}).get("conditions"), "status"
    )
    assert condition(operator.model("m"), "Ready") == condition(operator.model("m"), "Ready")
    assert status and condition(operator.model("m"), "Progressing")["status"] == "True"  # type: ignore[index]
    assert operator.model("m")["status"]["selector"] == "localmodel.dev/model=m"
