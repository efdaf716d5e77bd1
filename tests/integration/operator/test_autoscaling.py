"""The operator's autoscaler, running for real (kopf daemons, the emulator), fed synthetic load.

The load comes from stand-in routers: small HTTP servers answering `GET /load` as the router does
(`localmodel_router/routes/scaling.py`), with figures the test sets. What is under test is the operator's
side: reading every router, summing, averaging, clamping, delaying scale-down, and writing replicas.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from localmodel_operator.settings import AutoscalerSettings, OperatorSettings
from tests.integration.operator.conftest import run_operator
from tests.support.api_server import NAMESPACE, Cluster
from tests.support.stand_in_router import StandInRouter

SCALED = {
    "model": {"url": "https://models.example/m.gguf"},
    "minReplicas": 0,
    "maxReplicas": 3,
    "scaleDownDelaySeconds": 1,
    "autoscaling": {"targetRequests": 2, "windowSeconds": 1},
}


def replicas(cluster: Cluster) -> int | None:
    value: int | None = cluster.model("m")["spec"].get("replicas")
    return value


def scale_events(direction: str) -> float:
    labels = {"namespace": NAMESPACE, "model": "m", "direction": direction}
    return REGISTRY.get_sample_value("localmodel_operator_scale_events_total", labels) or 0.0


def autoscaled(**autoscaler: Any) -> OperatorSettings:
    return OperatorSettings(autoscaler=AutoscalerSettings(interval_seconds=0.1, **autoscaler))


async def test_replicas_follow_load_up_at_once_down_after_the_delay_and_to_zero(cluster: Cluster) -> None:
    async with StandInRouter().serving() as router, run_operator(autoscaled(router_urls=[router.url])):
        ups, downs = scale_events("up"), scale_events("down")
        await cluster.apply_model("m", SCALED)
        await cluster.wait_for(lambda: cluster.child("apps/v1/deployments", "m"), "the Deployment")
        await asyncio.sleep(0.5)
        assert replicas(cluster) is None  # idle at zero: nothing written

        router.active = 5  # 5 requests, 2 per replica: 3 replicas
        await cluster.wait_for(lambda: replicas(cluster) == 3, "scaled up to 3")
        await cluster.wait_for(
            lambda: cluster.child("apps/v1/deployments", "m")["spec"]["replicas"] == 3, "Deployment at 3"
        )
        router.active = 2
        started = asyncio.get_running_loop().time()
        await cluster.wait_for(lambda: replicas(cluster) == 1, "scaled down to 1")
        # Not before the window forgot the burst and the lower figure held for the delay.
        assert asyncio.get_running_loop().time() - started >= 1.0
        router.active = 0
        await cluster.wait_for(lambda: replicas(cluster) == 0, "scaled to zero")

        assert (scale_events("up") - ups, scale_events("down") - downs) == (1, 2)

        def reasons() -> list[str]:
            return [
                event.raw.get("reason")
                for (r, _, _), event in cluster.server.objects.items()
                if r.plural == "events" and event.raw.get("reason", "").startswith("Scaled")
            ]

        # kopf posts Events from a queue of its own: the last may land a moment after the scale.
        await cluster.wait_for(lambda: len(reasons()) >= 3, "three scale Events")
        assert reasons() == ["ScaledUp", "ScaledDown", "ScaledDown"]


async def test_no_answer_from_the_routers_means_no_scaling(cluster: Cluster) -> None:
    async with StandInRouter().serving() as router, run_operator(autoscaled(router_urls=[router.url])):
        router.active = 6
        await cluster.apply_model("m", SCALED)
        await cluster.wait_for(lambda: replicas(cluster) == 3, "scaled up to 3")
        router.failing = True  # the load is unknown: zero would be a guess
        await asyncio.sleep(2.5)  # past window and delay
        assert replicas(cluster) == 3


async def test_every_ready_router_replica_behind_the_service_is_summed(cluster: Cluster) -> None:
    first, second, gone, leaving = StandInRouter(), StandInRouter(), StandInRouter(), StandInRouter()
    async with first.serving(), second.serving(), gone.serving(), leaving.serving():
        for router in (first, second, gone, leaving):
            router.active = 2
            await cluster.set_endpoint("router", f"127.0.0.1:{router.port}", port_name="http")
        await cluster.set_endpoint("router", f"127.0.0.1:{gone.port}", ready=False, port_name="http")
        # Terminating but still ready, as a Service publishing not-ready addresses shows a leaving pod.
        await cluster.server.patch(
            f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/router-{leaving.port}",
            json={
                "endpoints": [
                    {"addresses": ["127.0.0.1"], "conditions": {"ready": True, "terminating": True}}
                ]
            },
        )
        async with run_operator(autoscaled(router_service=f"{NAMESPACE}/router")):
            await cluster.apply_model("m", SCALED)
            # 2 + 2 from the ready replicas (the not-ready and the terminating one are not asked).
            await cluster.wait_for(lambda: replicas(cluster) == 2, "scaled to 2")
            await asyncio.sleep(0.5)
            assert replicas(cluster) == 2


@pytest.mark.parametrize("spec", [{"minReplicas": 1}, {**SCALED, "autoscaling": {"enabled": False}}])
async def test_models_without_a_range_or_with_autoscaling_off_are_left_alone(
    cluster: Cluster, spec: dict[str, Any]
) -> None:
    async with StandInRouter().serving() as router, run_operator(autoscaled(router_urls=[router.url])):
        router.active = 6
        await cluster.apply_model("m", {"model": SCALED["model"], **spec})
        await cluster.wait_for(lambda: cluster.child("apps/v1/deployments", "m"), "the Deployment")
        await asyncio.sleep(1.0)
        assert replicas(cluster) is None
