"""The fit plan at reconcile, for real: kopf and the operator against the API emulator, model files served
over HTTP on loopback (a synthetic Llama-3.1-70B header with a real-size vocabulary, the real SmolLM2
file), of which the operator reads only the header."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localmodel_operator.settings import OperatorSettings
from tests.integration.operator.conftest import run_operator
from tests.support.api_server import Cluster
from tests.support.file_server import FileServer
from tests.support.gguf_files import LLAMA_31_70B, header_bytes, llama_metadata, llama_tensors

DEPLOYMENTS, SERVICES = "apps/v1/deployments", "v1/services"
SEVENTY_B_PATH = "/meta-llama/Llama-3.1-70B-Instruct-Q4_K_M.gguf"
PADDING = 32 << 20  # bytes served after the header, standing in for the weights (never read)


def condition(model: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = model.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def warnings(cluster: Cluster) -> list[tuple[str, str]]:
    return [
        (event.raw.get("reason"), event.raw.get("message"))
        for (resource, _, _), event in cluster.server.objects.items()
        if resource.plural == "events" and not event.deleted and event.raw.get("type") == "Warning"
    ]


def backend(cluster: Cluster, name: str) -> dict[str, Any]:
    deployment = cluster.child(DEPLOYMENTS, name)
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def gpu_layers(container: dict[str, Any]) -> int:
    args = container["args"]
    return int(args[args.index("--gpu-layers") + 1])


def bytes_asked(files: FileServer, path: str) -> int:
    """What the operator asked of a file, by the ranges of its requests (each must have one)."""
    total = 0
    for request in files.requests:
        if request.path == path:
            first, _, last = request.headers["range"].removeprefix("bytes=").partition("-")
            total += int(last) - int(first) + 1
    return total


@pytest.fixture(scope="module")
def seventy_b_header() -> bytes:
    return header_bytes(llama_metadata(LLAMA_31_70B, vocabulary=True), llama_tensors(LLAMA_31_70B))


@pytest.fixture
def files(seventy_b_header: bytes) -> Iterator[FileServer]:
    with FileServer() as server:
        server.add_file(SEVENTY_B_PATH, seventy_b_header + bytes(PADDING))
        yield server


def on_24_gib_gpus() -> OperatorSettings:
    """The chart's `backend.accelerators.nvidia.gpuMemory: 24Gi`."""
    base = OperatorSettings()
    nvidia = base.accelerators["nvidia"].model_copy(update={"gpu_memory": "24Gi"})
    return OperatorSettings(accelerators={**base.accelerators, "nvidia": nvidia})


def seventy_b(files: FileServer, gpus: int, **engine: Any) -> dict[str, Any]:
    return {
        "model": {"url": files.url + SEVENTY_B_PATH},
        "resources": {"gpu": {"count": gpus}},
        "backend": {"engine": engine},
    }


async def test_a_70b_is_refused_on_one_24_gib_gpu(
    cluster: Cluster, files: FileServer, seventy_b_header: bytes
) -> None:
    async with run_operator(on_24_gib_gpus()):
        await cluster.apply_model("llama", seventy_b(files, 1, contextSize=8192))
        await cluster.wait_for(lambda: condition(cluster.model("llama"), "Fits"), "a Fits condition")
        await cluster.wait_for(lambda: warnings(cluster), "a Warning Event")
    status = cluster.model("llama")["status"]
    fits, ready = condition(cluster.model("llama"), "Fits"), condition(cluster.model("llama"), "Ready")
    assert (fits["status"], fits["reason"]) == ("False", "DoesNotFit")
    assert (ready["status"], ready["reason"], status["summary"]) == ("False", "DoesNotFit", "DoesNotFit")
    assert fits["message"].startswith("does not fit with 81 of 81 layers on 1 GPU(s): GPU0 needs")
    assert ("DoesNotFit", fits["message"]) in warnings(cluster)
    assert cluster.child(DEPLOYMENTS, "llama") is None and cluster.child(SERVICES, "llama") is None
    plan = status["plan"]
    assert (plan["verdict"], plan["gpuLayers"], plan["layers"]) == ("none", 81, 81)
    (gpu,) = [device for device in plan["devices"] if device["device"] == "GPU0"]
    assert gpu["capacityBytes"] == 24 << 30 < gpu["totalBytes"]
    # Only the header was read, though the file goes on (its weights here, 32 MiB of zeros).
    assert len(seventy_b_header) < bytes_asked(files, SEVENTY_B_PATH) < len(seventy_b_header) + (1 << 20)


async def test_a_70b_on_two_24_gib_gpus_offloads_part_of_its_layers(
    cluster: Cluster, files: FileServer
) -> None:
    # At 32k tokens the KV cache leaves room on the two GPUs for part of the layers (at 8k all fit).
    async with run_operator(on_24_gib_gpus()):
        await cluster.apply_model("llama", seventy_b(files, 2, contextSize=32768, gpuLayers="auto"))
        await cluster.wait_for(lambda: cluster.child(DEPLOYMENTS, "llama"), "a Deployment")
        await cluster.wait_for(lambda: cluster.model("llama").get("status", {}).get("plan"), "a plan")
    plan = cluster.model("llama")["status"]["plan"]
    container = backend(cluster, "llama")
    assert plan["verdict"] == "partial" and 0 < gpu_layers(container) == plan["gpuLayers"] < 81
    assert [device["device"] for device in plan["devices"]] == ["CPU", "GPU0", "GPU1"]
    assert all(gpu["totalBytes"] <= gpu["capacityBytes"] == 24 << 30 for gpu in plan["devices"][1:])
    fits = condition(cluster.model("llama"), "Fits")
    assert (fits["status"], fits["reason"]) == ("True", "Fits")
    assert fits["message"].startswith(f"partial offload: {plan['gpuLayers']} of 81 layers on 2 GPU(s)")
    # The layers left in RAM are in the memory request (where the pod is placed), not a limit.
    cpu = plan["devices"][0]
    assert cpu["layers"] == 81 - plan["gpuLayers"] and cpu["totalBytes"] > 5 << 30
    assert container["resources"]["requests"]["memory"] == f"{math.ceil(cpu['totalBytes'] / (1 << 20))}Mi"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}


async def test_a_served_model_changed_to_one_that_cannot_fit_loses_its_pods(
    cluster: Cluster, files: FileServer
) -> None:
    async with run_operator(on_24_gib_gpus()):
        await cluster.apply_model("llama", seventy_b(files, 2, contextSize=8192))
        await cluster.wait_for(lambda: cluster.child(DEPLOYMENTS, "llama"), "a Deployment")
        assert gpu_layers(backend(cluster, "llama")) == -1  # every layer fits: as asked
        reads = len(files.requests)
        await cluster.patch_model("llama", {"resources": {"gpu": {"count": 1}}})
        await cluster.wait_for(
            lambda: cluster.child(DEPLOYMENTS, "llama") is None and cluster.child(SERVICES, "llama") is None,
            "the Deployment and Service deleted",
        )
        await cluster.wait_for(
            lambda: condition(cluster.model("llama"), "Ready").get("reason") == "DoesNotFit", "Ready=False"
        )
    assert cluster.model("llama")["status"]["plan"]["verdict"] == "none"
    # The second reconcile planned from the header the first one read.
    assert len(files.requests) == reads


async def test_smollm2_over_http_gets_a_plan_and_a_memory_request_from_it(
    cluster: Cluster, smollm2_path: Path
) -> None:
    with FileServer() as server:
        url = server.add_file("/HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1.gguf", smollm2_path.read_bytes())
        async with run_operator():
            await cluster.apply_model(
                "smollm2", {"model": {"url": url}, "backend": {"engine": {"contextSize": 2048}}}
            )
            await cluster.wait_for(lambda: cluster.child(DEPLOYMENTS, "smollm2"), "a Deployment")
            await cluster.wait_for(lambda: cluster.model("smollm2").get("status", {}).get("plan"), "a plan")
        asked = bytes_asked(server, "/HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1.gguf")
    plan = cluster.model("smollm2")["status"]["plan"]
    assert plan["verdict"] == "cpu" and plan["weightsBytes"] > 50 << 20 and plan["kvCacheBytes"] > 0
    (cpu,) = plan["devices"]
    assert "capacityBytes" not in cpu  # no memory limit in the spec: RAM not checked
    memory = backend(cluster, "smollm2")["resources"]
    assert memory["requests"]["memory"] == f"{math.ceil(cpu['totalBytes'] / (1 << 20))}Mi" != "1Gi"
    assert "limits" not in memory
    assert condition(cluster.model("smollm2"), "Fits")["status"] == "True"
    assert asked < 4 << 20 < smollm2_path.stat().st_size  # the header, not the 98 MB file


async def test_a_claims_file_is_not_planned_and_served_as_before(cluster: Cluster) -> None:
    async with run_operator(on_24_gib_gpus()):
        await cluster.apply_model(
            "m", {"model": {"url": "pvc://models/m.gguf"}, "resources": {"gpu": {"count": 1}}}
        )
        await cluster.wait_for(lambda: cluster.child(DEPLOYMENTS, "m"), "a Deployment")
        await cluster.wait_for(lambda: condition(cluster.model("m"), "Fits"), "a Fits condition")
    fits = condition(cluster.model("m"), "Fits")
    assert (fits["status"], fits["reason"]) == ("Unknown", "NotPlanned")
    assert "pvc://models/m.gguf is read where the backend runs" in fits["message"]
    assert "plan" not in cluster.model("m")["status"]
    container = backend(cluster, "m")
    assert gpu_layers(container) == -1
    assert container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"] == "1Gi"


async def test_an_unreadable_header_serves_anyway_and_is_read_again_at_the_next_reconcile(
    cluster: Cluster, files: FileServer, seventy_b_header: bytes
) -> None:
    async with run_operator(on_24_gib_gpus()):
        later = "/later/Llama-3.1-70B-Q4_K_M.gguf"  # 404 until it is added
        await cluster.apply_model(
            "llama",
            {**seventy_b(files, 2, contextSize=8192, gpuLayers="auto"), "model": {"url": files.url + later}},
        )
        await cluster.wait_for(lambda: cluster.child(DEPLOYMENTS, "llama"), "a Deployment")
        await cluster.wait_for(lambda: condition(cluster.model("llama"), "Fits"), "a Fits condition")
        fits = condition(cluster.model("llama"), "Fits")
        assert (fits["status"], fits["reason"]) == ("Unknown", "HeaderUnreadable")
        assert "HTTP 404" in fits["message"] and "every layer" in fits["message"]
        assert gpu_layers(backend(cluster, "llama")) == -1  # auto without a plan: the default
        files.add_file(later, seventy_b_header)
        await cluster.patch_model("llama", {"replicas": 2})  # any change reconciles again
        await cluster.wait_for(
            lambda: condition(cluster.model("llama"), "Fits").get("status") == "True", "Fits=True"
        )
        await cluster.wait_for(lambda: gpu_layers(backend(cluster, "llama")) == 81, "every layer, planned")
    assert cluster.model("llama")["status"]["plan"]["verdict"] == "gpu"
