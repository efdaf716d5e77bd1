from __future__ import annotations

from typing import Any

import pytest

from localmodel.manifests import ManifestError, parse_manifest
from localmodel.spec import GpuVendor, Task


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "m"},
        "spec": {"model": {"url": "hf://org/repo/m.gguf"}, **spec},
    }


def test_defaults() -> None:
    model = parse_manifest(manifest(), "m.yaml")
    assert model.served_name == "m"
    assert model.spec.tasks == [Task.CHAT, Task.COMPLETION]
    assert (model.spec.initial_replicas, model.spec.replica_ceiling) == (1, 1)
    assert model.spec.resources.gpu is None


def test_full_spec_in_manifest_spelling() -> None:
    model = parse_manifest(
        manifest(
            servedName="org/m:q4",
            aliases=["gpt-4o-mini"],
            tasks=["embedding"],
            backend={"engine": {"contextSize": 8192, "gpuLayers": -1, "args": ["--mlock"]}},
            replicas=2,
            minReplicas=0,
            maxReplicas=3,
            resources={"cpu": "500m", "memory": "4Gi", "gpu": {"count": 2, "vendor": "amd"}},
            nodeSelector={"pool": "gpu"},
            tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            env=[{"name": "HF_TOKEN", "value": "x"}],
        ),
        "m.yaml",
    )
    spec = model.spec
    assert model.served_name == "org/m:q4"
    assert spec.backend.engine.context_size == 8192
    assert spec.resources.gpu is not None and spec.resources.gpu.vendor is GpuVendor.AMD
    assert spec.loads_embeddings and spec.initial_replicas == 2 and spec.replica_ceiling == 3


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"backend": {"engine": {"contextSize": 0}}},
            "spec.backend.engine.contextSize",
            "greater than or equal",
        ),
        (
            {"backend": {"engine": {"contextSize": 99999999999}}},
            "spec.backend.engine.contextSize",
            "less than or equal to 16777216",
        ),
        (
            {"tasks": ["chat", "dance"]},
            "spec.tasks[1]",
            "'chat', 'completion', 'embedding', 'rerank', 'transcription' or 'speech'",
        ),
        ({"model": {"url": "ftp://x/m.gguf"}}, "spec.model.url", "should match pattern"),
        ({"model": {"url": "hf://o/r/m.gguf", "sha256": "ABC"}}, "spec.model.sha256", "should match pattern"),
        ({"model": {"url": "hf://o/r/m.gguf", "sha256": 12345}}, "spec.model.sha256", "quote the sha256"),
        ({"resources": {"memory": "lots"}}, "spec.resources.memory", "should match pattern"),
        ({"tolerations": [{"effect": "Sometimes"}]}, "spec.tolerations[0].effect", "NoSchedule"),
        ({"contextSize": 512}, "spec.contextSize", "Extra inputs are not permitted"),
        ({"minReplicas": 2, "maxReplicas": 1}, "spec", "minReplicas 2 exceeds maxReplicas 1"),
        ({"replicas": 0, "minReplicas": 1}, "spec", "replicas 0 is below minReplicas 1"),
        ({"backend": {"image": "i", "address": "h:1"}}, "spec.backend", "not both"),
        ({"model": None}, "spec", "`model` is required unless `backend.address`"),
        (
            {"backend": {"engine": {"gpuLayers": -2}}},
            "spec.backend.engine.gpuLayers",
            "-1 for all) or `auto`",
        ),
        ({"backend": {"engine": {"gpuLayers": "most"}}}, "spec.backend.engine.gpuLayers", "or `auto`"),
    ],
)
def test_invalid_fields_are_named(spec: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(manifest(**spec), "bad.yaml")
    text = str(error.value)
    assert text.startswith("bad.yaml: invalid LocalModel:")
    assert f"  {field}: " in text and message in text, text


def test_metadata_name_must_be_a_dns_label() -> None:
    document = manifest()
    document["metadata"]["name"] = "Not_A_Label"
    with pytest.raises(ManifestError, match=r"metadata\.name: String should match pattern"):
        parse_manifest(document, "bad.yaml")


def test_external_backend_needs_no_model() -> None:
    document = manifest(backend={"address": "gpu-box:50051"})
    del document["spec"]["model"]
    assert parse_manifest(document, "m.yaml").spec.backend.address == "gpu-box:50051"


def test_gpu_layers_are_a_count_or_auto() -> None:
    for layers in (-1, 0, 40, "auto"):
        model = parse_manifest(manifest(backend={"engine": {"gpuLayers": layers}}), "m.yaml")
        assert model.spec.backend.engine.gpu_layers == layers


def test_rerank_is_refused_unless_a_backend_that_reranks_is_named() -> None:
    from localmodel.spec import RERANK_NEEDS_A_BACKEND, LocalModelSpec

    model = {"url": "hf://org/repo/m.gguf"}
    with pytest.raises(ValueError, match="tasks: rerank needs a backend that reranks"):
        LocalModelSpec.model_validate({"model": model, "tasks": ["rerank"]})
    LocalModelSpec.model_validate(
        {"model": model, "tasks": ["rerank"], "backend": {"image": "localai/rerankers"}}
    )
    LocalModelSpec.model_validate({"tasks": ["rerank"], "backend": {"address": "reranker:50051"}})
    from tests.support.kube_schemas import crd

    rules = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-validations"
    ]
    assert RERANK_NEEDS_A_BACKEND in [rule["message"] for rule in rules]  # the API server refuses it too
