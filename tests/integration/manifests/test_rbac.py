"""The chart's RBAC rules against the API calls the operator and router really make.

Each component runs as its real entry point against the API emulator, with the settings file the chart
renders, through a scenario that exercises its every kind of call (reconcile, status, autoscale, a pod
crash, delete; discovery, scale from zero). Every request it sent must be granted by the rules the chart
binds to its ServiceAccount, and every rule must have been used: the chart grants exactly what the code
needs. A new call in the code without a rule, or a rule nothing uses any more, fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localmodel.ports import free_port
from tests.support.api_server import NAMESPACE, Cluster, segfaulted_backend_status
from tests.support.chart import RELEASE, find, render
from tests.support.fake_backend import start_fake_backend
from tests.support.router import RouterProcess
from tests.support.stand_in_router import StandInRouter

ROUTER, OPERATOR = f"{RELEASE}-localmodel-router", f"{RELEASE}-localmodel-operator"
# The release shares the models' namespace here, so that the router Service the operator's autoscaler
# reads lives in the emulator's one namespace.
SCOPES = {"cluster-wide": {}, "namespaced": {"watchNamespaces": [NAMESPACE]}}
scopes = pytest.mark.parametrize("values", SCOPES.values(), ids=SCOPES.keys())
Call = tuple[str, str, str, str | None]  # (API group, resource[/subresource], verb, namespace)
VERBS = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "CREATE": "create", "DELETE": "delete"}


def calls(cluster: Cluster, user_agents: tuple[str, ...]) -> set[Call]:
    """What the component sent (told apart from the test's own requests by their User-Agent)."""
    made: set[Call] = set()
    for request in cluster.server[:]:
        if (
            request.resource is None
            or request.resource.plural is None
            or not request.headers.get("User-Agent", "").startswith(user_agents)
        ):
            continue  # discovery paths (/apis, /version) are open to every authenticated user
        verb = VERBS.get(str(request.action.value)) or ("update" if request.method == "PUT" else "patch")
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        made.add((request.resource.group or "", resource, verb, request.namespace))
    return made


def grants(objects: list[dict[str, Any]], account: str) -> set[Call]:
    """(group, resource, verb, namespace or None for cluster-wide) the rules bound to `account` allow."""
    roles = {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")): o for o in objects}
    allowed: set[Call] = set()
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(subject["name"] == account for subject in binding["subjects"]):
            continue
        namespace = binding["metadata"].get("namespace")
        role = roles[
            (
                binding["roleRef"]["kind"],
                binding["roleRef"]["name"],
                namespace if binding["roleRef"]["kind"] == "Role" else None,
            )
        ]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    allowed.update((group, resource, verb, namespace) for verb in rule["verbs"])
    return allowed


def assert_exactly_granted(made: set[Call], allowed: set[Call]) -> None:
    def granted(call: Call) -> bool:
        group, resource, verb, namespace = call
        return (group, resource, verb, None) in allowed or (namespace is not None and call in allowed)

    missing = sorted(call for call in made if not granted(call))
    assert not missing, f"calls the chart does not grant: {missing}"
    used = {(g, r, v) for g, r, v, _ in made}
    unused = sorted((g, r, v) for g, r, v, _ in allowed if (g, r, v) not in used)
    assert not unused, f"granted but never used (least privilege: drop them): {unused}"


@contextlib.asynccontextmanager
async def process(*command: str) -> AsyncIterator[None]:
    """A component's process; its log is shown when the test fails."""
    running = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    try:
        yield
    finally:
        running.terminate()
        _, stderr = await asyncio.wait_for(running.communicate(), 30)
        print(stderr.decode()[-6000:], file=sys.stderr)  # noqa: T201  (captured; shown on failure)
    assert running.returncode == 0, stderr.decode()[-3000:]


@scopes
async def test_the_operator_is_granted_exactly_what_it_calls(
    values: dict[str, Any], cluster: Cluster, tmp_path: Path
) -> None:
    chart_values = {
        **values,
        "operator": {"autoscalerIntervalSeconds": 0.2, "metricsPort": free_port()},
        "backend": {"modelCache": {"kind": "pvc"}},
    }
    objects = render(chart_values, tmp_path, "--namespace", NAMESPACE)
    settings = tmp_path / "operator.yaml"
    settings.write_text(find(objects, "ConfigMap", OPERATOR)["data"]["operator.yaml"])
    spec = {
        "model": {"url": "hf://org/repo/m.gguf"},
        "minReplicas": 0,
        "maxReplicas": 2,
        "scaleDownDelaySeconds": 0,
        "autoscaling": {"windowSeconds": 1},
    }
    async with StandInRouter().serving() as router:
        await cluster.set_endpoint(ROUTER, f"127.0.0.1:{router.port}", port_name="http")
        async with process(sys.executable, "-m", "localmodel.cli", "operator", "--config", str(settings)):
            await cluster.apply_model("m", spec)
            await cluster.wait_for(lambda: cluster.child("apps/v1/deployments", "m"), "reconciled", 30)
            router.active = 2  # the autoscaler scales up...
            await cluster.wait_for(lambda: cluster.model("m")["spec"].get("replicas") == 2, "scaled up", 30)
            generation = cluster.child("apps/v1/deployments", "m")["metadata"]["generation"]
            status = {
                "replicas": 2,
                "readyReplicas": 2,
                "updatedReplicas": 2,
                "observedGeneration": generation,
            }
            await cluster.set_deployment_status("m", status)
            await cluster.wait_for(
                lambda: cluster.model("m").get("status", {}).get("readyReplicas") == 2, "status"
            )
            # A backend pod crashes: read from the pods, told in the status and an Event.
            deployment = cluster.child("apps/v1/deployments", "m")
            assert deployment is not None
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            await cluster.set_pod("m-5d8f9c-x2k4q", labels, segfaulted_backend_status(1))
            await cluster.wait_for(
                lambda: "BackendCrashed" in str(cluster.model("m")["status"]), "crash told"
            )
            # Someone edits the children by hand; the next reconcile (a spec change) restores them.
            await cluster.server.patch(
                f"/api/v1/namespaces/{NAMESPACE}/services/m", json={"spec": {"ports": []}}
            )
            claim = f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/m-model-cache"
            await cluster.server.patch(claim, json={"spec": {"resources": {"requests": {"storage": "1Gi"}}}})
            policy = f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/m"
            await cluster.server.patch(policy, json={"spec": {"ingress": [{}]}})  # opened to everyone
            await cluster.patch_model(
                "m", {"backend": {"engine": {"contextSize": 4096}}}
            )  # ...a spec change...
            await cluster.wait_for(
                lambda: "4096" in str(cluster.child("apps/v1/deployments", "m")), "rolled", 30
            )
            # ...an external backend: the operator deletes the children it no longer wants...
            await cluster.patch_model("m", {"backend": {"address": "llm.example:50051"}})
            await cluster.wait_for(
                lambda: (
                    not any(
                        cluster.child(resource, name)
                        for resource, name in (
                            ("apps/v1/deployments", "m"),
                            ("v1/services", "m"),
                            ("v1/persistentvolumeclaims", "m-model-cache"),
                            ("networking.k8s.io/v1/networkpolicies", "m"),
                        )
                    )
                ),
                "children deleted",
                30,
            )
            await cluster.delete_model("m")  # ...and the end
            await asyncio.sleep(1)
    assert_exactly_granted(calls(cluster, ("kopf/", "OpenAPI-Generator/")), grants(objects, OPERATOR))


@scopes
async def test_the_router_is_granted_exactly_what_it_calls(
    values: dict[str, Any], cluster: Cluster, tmp_path: Path
) -> None:
    objects = render(values, tmp_path, "--namespace", NAMESPACE)
    config = tmp_path / "router.yaml"
    config.write_text(find(objects, "ConfigMap", ROUTER)["data"]["router.yaml"])
    await cluster.apply_model("m", {"model": {"url": "hf://org/repo/m.gguf"}, "minReplicas": 0})
    server, port, _ = await start_fake_backend(text="hello")
    try:
        async with (
            RouterProcess(["--config", str(config)]) as router,
            httpx.AsyncClient(timeout=60) as client,
        ):
            body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
            answer = asyncio.create_task(client.post(f"{router.url}/v1/chat/completions", json=body))
            await cluster.wait_for(
                lambda: cluster.model("m")["spec"].get("replicas") == 1, "scaled from zero", 30
            )
            await cluster.set_endpoint("m", f"127.0.0.1:{port}")
            assert (await answer).status_code == 200
    finally:
        await server.stop(None)
    assert_exactly_granted(calls(cluster, ("OpenAPI-Generator/",)), grants(objects, ROUTER))
