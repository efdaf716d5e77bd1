"""Every engine through the operator for real (kopf, its handlers, kubernetes_asyncio) against the API
emulator: the speech examples become Deployments of their engine's image and arguments, and a spec an
engine cannot serve is reported, not run. (The emulator has no CRD schema: the operator's own
validation is what refuses here; the CRD's rules say the same, tests/integration/manifests/test_crd.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from localmodel import __version__
from localmodel.spec import BackendType, gpu_not_served_message
from localmodel_operator.settings import OperatorSettings
from tests.integration.operator.conftest import run_operator
from tests.support.api_server import Cluster

DEPLOYMENTS = "apps/v1/deployments"
EXAMPLES = Path(__file__).parents[3] / "examples"


def example(file_name: str) -> tuple[str, dict[str, Any]]:
    manifest = yaml.safe_load((EXAMPLES / file_name).read_text())
    return manifest["metadata"]["name"], manifest["spec"]


def condition(model: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = model.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def pod_spec(cluster: Cluster, name: str) -> dict[str, Any]:
    deployment = cluster.child(DEPLOYMENTS, name)
    assert deployment is not None
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


async def test_the_whisper_example_runs_the_faster_whisper_image(operator: Cluster) -> None:
    name, spec = example("whisper.yaml")
    await operator.apply_model(name, spec)
    await operator.wait_for(lambda: operator.child(DEPLOYMENTS, name), "a Deployment")
    pod = pod_spec(operator, name)
    (backend,) = pod["containers"]
    image = f"localmodel/backend-faster-whisper:{__version__}"
    assert backend["image"] == image and "command" not in backend
    path = backend["args"][3]
    assert backend["args"][:3] == ["--addr", "0.0.0.0:50051", "--model"]
    assert path.startswith("/models/sources/") and path.endswith("/faster-whisper-tiny.en")
    assert backend["args"][4:] == ["--threads", "2", "--device", "cpu"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert backend[probe]["grpc"] == {"port": 50051}
    assert backend["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    (fetch,) = pod["initContainers"]  # the whole repository, by `localmodel fetch` in the engine's image
    assert (fetch["image"], fetch["args"][:2]) == (image, ["fetch", "hf://Systran/faster-whisper-tiny.en/"])
    # Nothing read for a plan (no GGUF file), and a status that says so.
    await operator.wait_for(lambda: condition(operator.model(name), "Fits"), "a Fits condition")
    fits = condition(operator.model(name), "Fits")
    assert (fits["status"], fits["reason"]) == ("Unknown", "NotPlanned")
    assert "faster-whisper models are not planned" in fits["message"]
    assert "plan" not in operator.model(name)["status"]
    assert operator.model(name)["status"]["summary"] == "Loading"


async def test_the_piper_example_reads_its_voice_from_the_claim(operator: Cluster) -> None:
    name, spec = example("piper.yaml")
    await operator.apply_model(name, spec)
    await operator.wait_for(lambda: operator.child(DEPLOYMENTS, name), "a Deployment")
    pod = pod_spec(operator, name)
    (backend,) = pod["containers"]
    assert backend["image"] == f"localmodel/backend-piper:{__version__}"
    assert backend["args"] == ["--addr", "0.0.0.0:50051", "--model", "/mnt/model-source/en_US-joe-medium"]
    assert backend["readinessProbe"]["grpc"] == {"port": 50051}
    assert {
        "name": "model-source",
        "persistentVolumeClaim": {"claimName": "piper-voices", "readOnly": True},
    } in (pod["volumes"])
    assert "initContainers" not in pod


async def test_whisper_on_a_gpu_runs_the_cuda_image_of_the_settings(cluster: Cluster) -> None:
    settings = OperatorSettings()
    settings.accelerators["nvidia"].images[BackendType.FASTER_WHISPER] = "registry.example/whisper:cuda"
    name, spec = example("whisper.yaml")
    async with run_operator(settings):
        await cluster.apply_model(name, {**spec, "resources": {**spec["resources"], "gpu": {"count": 1}}})
        await cluster.wait_for(lambda: cluster.child(DEPLOYMENTS, name), "a Deployment")
        (backend,) = pod_spec(cluster, name)["containers"]
    assert backend["image"] == "registry.example/whisper:cuda"
    assert backend["args"][-2:] == ["--device", "cuda"]
    assert backend["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resources": {"gpu": {"count": 1}}}, gpu_not_served_message(BackendType.PIPER, "nvidia")),
        ({"tasks": ["chat"]}, "backend type piper does not serve chat: it serves speech"),
    ],
    ids=["nvidia-gpus", "chat"],
)
async def test_what_piper_cannot_serve_is_reported_and_not_run(
    operator: Cluster, change: dict[str, Any], message: str
) -> None:
    name, spec = example("piper.yaml")
    await operator.apply_model(name, {**spec, **change})
    await operator.wait_for(lambda: condition(operator.model(name), "Ready"), "a status")
    ready = condition(operator.model(name), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert message in ready["message"]
    assert operator.child(DEPLOYMENTS, name) is None
