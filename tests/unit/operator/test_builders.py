"""The operator's pure builders over a matrix of specs; every manifest checked against Kubernetes' schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from localmodel import __version__
from localmodel.backend_types import BACKENDS, BackendType
from localmodel.gguf_header import BytesSource, parse_header
from localmodel.manifests import load_manifests, parse_manifest
from localmodel.spec import LocalModel
from localmodel_operator.accelerators import UnknownAcceleratorError
from localmodel_operator.builders import (
    build_cache_claim,
    build_children,
    build_deployment,
    build_network_policy,
    build_service,
    model_source,
    selector_string,
)
from localmodel_operator.conditions import external_status
from localmodel_operator.fit_check import FitCheck, planned
from localmodel_operator.settings import (
    AcceleratorProfile,
    BackendNetworkSettings,
    ModelCacheSettings,
    OperatorSettings,
    default_image,
)
from tests.support.gguf_files import LLAMA_31_70B, header_bytes, llama_metadata, llama_tensors
from tests.support.kube_schemas import assert_valid

SHA = "a" * 64
EXAMPLES = Path(__file__).parents[3] / "examples"


def model(name: str = "m", **spec: Any) -> LocalModel:
    document = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": name, "namespace": "ai"},
        "spec": {"model": {"url": "https://models.example/m.gguf", "sha256": SHA}, **spec},
    }
    return parse_manifest(document, "test")


SPECS = {
    "cpu": {"resources": {"cpu": "2", "memory": "2Gi"}, "backend": {"engine": {"contextSize": 4096}}},
    "nvidia": {"model": {"url": "hf://org/repo/m.gguf"}, "resources": {"gpu": {"count": 1}}, "replicas": 2},
    "gpu-pool": {
        "resources": {"gpu": {"count": 2, "vendor": "amd"}},
        "nodeSelector": {"pool": "mi300"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ai", "effect": "NoExecute"}],
    },
    "pvc-source": {"model": {"url": "pvc://models/llama/m.gguf", "sha256": SHA}},
    "file-in-image": {"model": {"url": "file:///opt/models/m.gguf"}},
    "scale-to-zero": {"minReplicas": 0, "env": [{"name": "HF_TOKEN", "value": "t"}]},
}
ROUTERS_ONLY = BackendNetworkSettings(
    enabled=True,
    router_namespace="localmodel-system",
    router_pod_labels={"app.kubernetes.io/component": "router"},
)
CACHES = {"emptyDir": ModelCacheSettings(), "pvc": ModelCacheSettings(kind="pvc", storage_class_name="fast")}


def deployment_of(built: LocalModel, settings: OperatorSettings) -> dict[str, Any]:
    return build_deployment(built, model_source(built), settings)


def claim_of(built: LocalModel, settings: OperatorSettings) -> dict[str, Any] | None:
    return build_cache_claim(built, model_source(built), settings)


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("case", SPECS)
def test_every_manifest_is_a_valid_kubernetes_object(case: str, cache: str) -> None:
    settings = OperatorSettings(model_cache=CACHES[cache])
    built = model(**SPECS[case])
    manifests = [deployment_of(built, settings), build_service(built, settings)]
    claim = claim_of(built, settings)
    manifests += [claim] if claim else []
    for manifest in manifests:
        assert_valid(manifest)
    deployment = manifests[0]
    assert deployment["metadata"] == manifests[1]["metadata"]
    assert deployment["spec"]["selector"]["matchLabels"] == manifests[1]["spec"]["selector"]
    assert selector_string(built) == "localmodel.dev/model=m"


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_builds_valid_kubernetes_objects(path: Path, cache: str) -> None:
    settings = OperatorSettings(model_cache=CACHES[cache])
    for manifest in load_manifests([path]):
        built = manifest.model
        if built.spec.backend.address:  # an external backend: nothing to build, only a status to report
            status = external_status(built, [], datetime.now(UTC))
            assert (status["summary"], status["replicas"]) == ("External", 0)
            continue
        claim = claim_of(built, settings)
        for child in [
            deployment_of(built, settings),
            build_service(built, settings),
            *([claim] if claim else []),
        ]:
            assert_valid(child)


def test_cpu_backend_runs_the_spec_command_with_probes_and_a_locked_down_pod() -> None:
    deployment = deployment_of(model(**SPECS["cpu"]), OperatorSettings())
    (backend,) = pod(deployment)["containers"]
    assert backend["args"][:4] == ["--addr", "0.0.0.0:50051", "--model", backend["args"][3]]
    assert backend["args"][3].startswith("/models/sources/") and backend["args"][3].endswith("/m.gguf")
    assert backend["args"][4:] == ["--context-size", "4096"]
    assert backend["readinessProbe"]["grpc"] == {"port": 50051}
    assert backend["startupProbe"]["failureThreshold"] * backend["startupProbe"]["periodSeconds"] == 1800
    assert backend["resources"] == {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert backend["securityContext"]["readOnlyRootFilesystem"] is True
    # A crashed backend's last log lines land in its status (lastState.terminated.message).
    assert (backend["name"], backend["terminationMessagePolicy"]) == ("backend", "FallbackToLogsOnError")
    assert pod(deployment)["securityContext"]["runAsNonRoot"] is True
    assert "nodeSelector" not in pod(deployment) and "runtimeClassName" not in pod(deployment)
    (fetch,) = pod(deployment)["initContainers"]
    assert fetch["args"] == [
        "fetch",
        "https://models.example/m.gguf",
        "--cache-dir",
        "/models",
        "--sha256",
        SHA,
    ]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_one_nvidia_gpu_gets_the_device_limit_toleration_and_cuda_image() -> None:
    deployment = deployment_of(model(**SPECS["nvidia"]), OperatorSettings())
    (backend,) = pod(deployment)["containers"]
    assert backend["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert backend["image"].endswith("-cuda")
    assert backend["args"][-2:] == ["--gpu-layers", "-1"]
    assert pod(deployment)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert deployment["spec"]["replicas"] == 2


def test_custom_pool_selector_and_tolerations_add_to_the_profile() -> None:
    settings = OperatorSettings()
    settings.accelerators["amd"].node_selector["gpu-vendor"] = "amd"
    settings.accelerators["amd"].runtime_class_name = "rocm"
    deployment = deployment_of(model(**SPECS["gpu-pool"]), settings)
    spec = pod(deployment)
    assert spec["nodeSelector"] == {"gpu-vendor": "amd", "pool": "mi300"}
    assert [t["key"] for t in spec["tolerations"]] == ["amd.com/gpu", "dedicated"]
    assert spec["runtimeClassName"] == "rocm"
    assert spec["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "2"


def test_pvc_source_is_mounted_read_only_and_verified() -> None:
    deployment = deployment_of(model(**SPECS["pvc-source"]), OperatorSettings())
    spec = pod(deployment)
    assert {
        "name": "model-source",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in spec["volumes"]
    assert spec["containers"][0]["args"][3] == "/mnt/model-source/llama/m.gguf"
    (verify,) = spec["initContainers"]
    assert verify["args"][:2] == ["fetch", "file:///mnt/model-source/llama/m.gguf"]


def test_file_in_the_image_needs_no_init_container_or_cache() -> None:
    spec = pod(deployment_of(model(**SPECS["file-in-image"]), OperatorSettings()))
    assert "initContainers" not in spec
    assert spec["containers"][0]["args"][3] == "/opt/models/m.gguf"
    assert [volume["name"] for volume in spec["volumes"]] == ["tmp"]


def test_per_model_cache_claim() -> None:
    settings = OperatorSettings(model_cache=CACHES["pvc"])
    built = model(**SPECS["cpu"])
    claim = claim_of(built, settings)
    assert claim is not None and claim["metadata"]["name"] == "m-model-cache"
    assert claim["spec"]["storageClassName"] == "fast"
    volumes = pod(deployment_of(built, settings))["volumes"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "m-model-cache"}} in volumes
    assert claim_of(model(**SPECS["file-in-image"]), settings) is None


def test_children_name_what_a_spec_does_not_want_and_why() -> None:
    pvc = OperatorSettings(model_cache=CACHES["pvc"], network_policy=ROUTERS_ONLY)
    served = build_children(model(**SPECS["cpu"]), pvc)
    assert [child["kind"] for child in served.wanted] == [
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "NetworkPolicy",
    ]
    assert served.unwanted == []
    external = build_children(model(backend={"address": "llm.example:50051"}), pvc)
    assert external.wanted == []
    assert external.names() == {
        "Deployment": "m",
        "Service": "m",
        "PersistentVolumeClaim": "m-model-cache",
        "NetworkPolicy": "m",
    }
    assert {gone.reason for gone in external.unwanted} == {
        "the model is served by its external backend llm.example:50051"
    }
    in_claim = build_children(model(**SPECS["pvc-source"]), pvc)
    assert [(gone.kind, gone.reason) for gone in in_claim.unwanted] == [
        ("PersistentVolumeClaim", "the model source is not downloaded")
    ]
    defaults = build_children(model(**SPECS["cpu"]), OperatorSettings())
    assert [(gone.kind, gone.reason) for gone in defaults.unwanted] == [
        ("PersistentVolumeClaim", "the model cache is 'emptyDir', not a claim per model"),
        ("NetworkPolicy", "network policies are off in the operator settings"),
    ]


def test_only_the_routers_reach_the_grpc_port_and_scrapers_the_metrics_port() -> None:
    settings = OperatorSettings(network_policy=ROUTERS_ONLY, backend_metrics_port=9090)
    built = model(**SPECS["cpu"])
    policy = build_network_policy(built, settings)
    assert_valid(policy)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"localmodel.dev/model": "m"}}
    grpc, metrics = policy["spec"]["ingress"]
    assert grpc == {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "localmodel-system"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "router"}},
            }
        ],
        "ports": [{"port": "grpc", "protocol": "TCP"}],
    }
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}]}
    container = pod(deployment_of(built, settings))["containers"][0]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert container["args"][container["args"].index("--metrics-port") + 1] == "9090"
    # Without a metrics port: no such port in the pod, nothing admitted but the routers.
    plain = OperatorSettings(
        network_policy=BackendNetworkSettings(enabled=True, router_pod_labels={"a": "b"})
    )
    assert len(build_network_policy(built, plain)["spec"]["ingress"]) == 1
    assert "--metrics-port" not in pod(deployment_of(built, plain))["containers"][0]["args"]
    same_namespace = build_network_policy(built, plain)["spec"]["ingress"][0]["from"][0]
    assert same_namespace["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "ai"}}


def test_a_network_policy_needs_the_router_labels() -> None:
    with pytest.raises(ValueError, match="router_pod_labels"):
        BackendNetworkSettings(enabled=True)


def test_a_vendor_without_profile_is_an_error_naming_the_field() -> None:
    settings = OperatorSettings()
    del settings.accelerators["intel"]
    with pytest.raises(
        UnknownAcceleratorError, match=r"spec.resources.gpu.vendor 'intel': no accelerator profile"
    ):
        deployment_of(model(resources={"gpu": {"vendor": "intel"}}), settings)


@pytest.mark.parametrize("case", SPECS)
def test_a_cache_claim_exactly_when_the_pod_downloads_into_it(case: str) -> None:
    settings = OperatorSettings(model_cache=CACHES["pvc"])
    built = model(**SPECS[case])
    source = model_source(built)
    spec = pod(build_deployment(built, source, settings))
    claimed = {"name": "model-cache", "persistentVolumeClaim": {"claimName": "m-model-cache"}} in spec[
        "volumes"
    ]
    fetched = [init["args"][1] for init in spec.get("initContainers", [])] == [source.url]
    assert (build_cache_claim(built, source, settings) is not None) == source.downloads == claimed == fetched


def _planned(built: LocalModel, gpu_memory: int | None = 24 << 30, ram: int | None = None) -> FitCheck:
    header = parse_header(
        BytesSource(header_bytes(llama_metadata(LLAMA_31_70B), llama_tensors(LLAMA_31_70B)))
    )
    return planned(built.spec, header, gpu_memory, ram)


def test_a_refused_spec_wants_no_pods_and_keeps_its_cache_claim() -> None:
    pvc = OperatorSettings(model_cache=CACHES["pvc"], network_policy=ROUTERS_ONLY)
    built = model(resources={"gpu": {"count": 1}})
    fit = _planned(built)
    assert fit.refused
    children = build_children(built, pvc, fit)
    assert children.wanted == []
    assert [(gone.kind, gone.name) for gone in children.unwanted] == [("Deployment", "m"), ("Service", "m")]
    assert {gone.reason for gone in children.unwanted} == {"the model does not fit (condition Fits)"}


def test_auto_gpu_layers_become_the_plans_count_and_ram_the_memory_request() -> None:
    built = model(
        resources={"gpu": {"count": 2}}, backend={"engine": {"contextSize": 32768, "gpuLayers": "auto"}}
    )
    fit = _planned(built)
    assert fit.plan is not None and fit.plan.verdict == "partial"
    deployment = deployment_of_fit(built, fit)
    assert_valid(deployment)
    (backend,) = pod(deployment)["containers"]
    assert backend["args"][backend["args"].index("--gpu-layers") + 1] == str(fit.plan.gpu_layers)
    # A request from the plan (where the pod is placed), no memory limit at an estimate.
    assert backend["resources"] == {
        "requests": {"cpu": "1", "memory": fit.memory_request},
        "limits": {"nvidia.com/gpu": "2"},
    }


def test_the_specs_memory_wins_over_the_plan_and_stays_the_limit() -> None:
    built = model(resources={"memory": "64Gi", "gpu": {"count": 2}})
    fit = _planned(built, ram=64 << 30)
    (backend,) = pod(deployment_of_fit(built, fit))["containers"]
    assert backend["resources"]["requests"]["memory"] == "64Gi"
    assert backend["resources"]["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "2"}


def test_without_a_plan_auto_offloads_every_layer_and_memory_is_the_setting() -> None:
    built = model(resources={"gpu": {"count": 1}}, backend={"engine": {"gpuLayers": "auto"}})
    unknown = FitCheck("Unknown", "HeaderUnreadable", "GET ...: timed out")
    for fit in (None, unknown):
        (backend,) = pod(deployment_of_fit(built, fit))["containers"]
        assert backend["args"][-2:] == ["--gpu-layers", "-1"]
        assert backend["resources"]["requests"]["memory"] == backend["resources"]["limits"]["memory"] == "1Gi"


def deployment_of_fit(built: LocalModel, fit: FitCheck | None) -> dict[str, Any]:
    return build_deployment(built, model_source(built), OperatorSettings(), fit)


# One model of each engine, from a source of the shape it loads.
ENGINE_MODELS = {
    BackendType.LLAMA_CPP: "hf://org/repo/m.gguf",
    BackendType.FASTER_WHISPER: "hf://Systran/faster-whisper-tiny.en",
    BackendType.PIPER: "pvc://piper-voices/en_US-joe-medium/",
}
ENGINE_ON_ACCELERATOR = [
    (backend_type, accelerator)
    for backend_type, kind in BACKENDS.items()
    for accelerator in sorted(kind.accelerators)
]


def engine_model(backend_type: BackendType, accelerator: str = "cpu", **backend: Any) -> LocalModel:
    gpu = {} if accelerator == "cpu" else {"resources": {"gpu": {"count": 1, "vendor": accelerator}}}
    document = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "m", "namespace": "ai"},
        "spec": {
            "model": {"url": ENGINE_MODELS[backend_type]},
            "backend": {"type": backend_type.value, **backend},
            **gpu,
        },
    }
    return parse_manifest(document, "test")


@pytest.mark.parametrize(("backend_type", "accelerator"), ENGINE_ON_ACCELERATOR, ids=str)
def test_each_engine_runs_its_own_image_for_the_accelerator(
    backend_type: BackendType, accelerator: str
) -> None:
    kind = BACKENDS[backend_type]
    deployment = deployment_of(engine_model(backend_type, accelerator), OperatorSettings())
    assert_valid(deployment)
    spec = pod(deployment)
    (backend,) = spec["containers"]
    image = f"{kind.image_repository}:{__version__}{kind.image_suffixes[accelerator]}"
    assert backend["image"] == image
    # The image's ENTRYPOINT is the engine's entry point: the pod gives the arguments only.
    assert "command" not in backend
    assert backend["args"][:3] == ["--addr", "0.0.0.0:50051", "--model"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert backend[probe]["grpc"] == {"port": 50051}
    # `localmodel fetch` runs from the engine's own image (every image has the core).
    assert all(init["image"] == image for init in spec.get("initContainers", []))


def test_a_whisper_repository_is_fetched_whole_into_the_cache() -> None:
    built = engine_model(BackendType.FASTER_WHISPER)
    spec = pod(deployment_of(built, OperatorSettings()))
    (backend,) = spec["containers"]
    (fetch,) = spec["initContainers"]
    assert fetch["command"] == ["localmodel"]
    assert fetch["args"] == ["fetch", "hf://Systran/faster-whisper-tiny.en/", "--cache-dir", "/models"]
    path = backend["args"][3]
    assert path.startswith("/models/sources/") and path.endswith("/faster-whisper-tiny.en")
    assert backend["args"][4:] == ["--device", "cpu"]
    on_gpu = pod(deployment_of(engine_model(BackendType.FASTER_WHISPER, "nvidia"), OperatorSettings()))
    assert on_gpu["containers"][0]["args"][-2:] == ["--device", "cuda"]
    assert on_gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_a_piper_voice_directory_is_read_from_its_claim_without_an_init_container() -> None:
    spec = pod(deployment_of(engine_model(BackendType.PIPER), OperatorSettings()))
    (backend,) = spec["containers"]
    assert backend["args"][3] == "/mnt/model-source/en_US-joe-medium"
    assert {"name": "model-source", "mountPath": "/mnt/model-source", "readOnly": True} in backend[
        "volumeMounts"
    ]
    assert "initContainers" not in spec  # nothing downloaded, and a directory has no sha256 to check


def test_the_settings_images_of_an_engine_and_the_specs_own_image_win() -> None:
    settings = OperatorSettings()
    settings.accelerators["cpu"].images[BackendType.PIPER] = "registry.example/piper:7"
    (backend,) = pod(deployment_of(engine_model(BackendType.PIPER), settings))["containers"]
    assert backend["image"] == "registry.example/piper:7"
    llama = pod(deployment_of(engine_model(BackendType.LLAMA_CPP), settings))["containers"][0]
    assert llama["image"] == settings.accelerators["cpu"].image  # llama-cpp's is the profile's `image`
    own = engine_model(BackendType.PIPER, "nvidia", image="registry.example/piper-gpu:1")
    assert pod(deployment_of(own, settings))["containers"][0]["image"] == "registry.example/piper-gpu:1"


def test_a_profile_without_images_gets_each_engines_default() -> None:
    settings = OperatorSettings(accelerators={"cpu": AcceleratorProfile(image="registry.example/llama:1")})
    (backend,) = pod(deployment_of(engine_model(BackendType.FASTER_WHISPER), settings))["containers"]
    assert backend["image"] == f"localmodel/backend-faster-whisper:{__version__}"


def test_the_default_profiles_hold_every_engines_images_from_the_table() -> None:
    for name, profile in OperatorSettings().accelerators.items():
        for backend_type in BACKENDS:
            assert profile.image_for(backend_type, name) == default_image(backend_type, name)
    assert default_image(BackendType.PIPER, "nvidia") is None


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (
            {"image": "x", "images": {"llama-cpp": "y"}},
            "the llama-cpp engine's image is the profile's `image`",
        ),
        ({"image": "x", "images": {"piper": "y"}}, "backend type piper has images for cpu only"),
    ],
)
def test_settings_refuse_images_that_would_never_run(profile: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        OperatorSettings(accelerators={"cpu": {"image": "x"}, "nvidia": profile})
