"""Pure: a LocalModel and the operator settings → its children's manifests (dicts, as the API takes them).

Children share the LocalModel's name and namespace: a Deployment of backend pods, a Service with a port
named `grpc` selecting them, and (model cache `pvc`) a PersistentVolumeClaim for the model file. The
backend container runs exactly the spec → command function's arguments (local mode runs the same).
What a spec does not want (an external backend wants none of them, nor does a spec the fit check refuses)
is named too, so that one left from an earlier spec is deleted. The fit check (fit_check.py) also gives
the number `gpuLayers: auto` stands for and the memory request where the spec gives none. The model
URL is parsed once, in `build_children`, and the typed source passed down; `_model_file` is the one
place its type decides the pod's volumes and init container. Every engine (`spec.backend.type`) gets
the same pod: its own image (accelerators.py), its own arguments (localmodel/command.py), the same
gRPC health probes, and its model (a file or a directory) fetched by `localmodel fetch` from its image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import assert_never

from localmodel.command import backend_command
from localmodel.fetch import ModelCache
from localmodel.sources import FileSource, HttpSource, HuggingFaceSource, PvcSource, Source, parse_source
from localmodel.spec import MODEL_LABEL, LocalModel
from localmodel_operator.accelerators import placement
from localmodel_operator.fit_check import FitCheck, served_spec
from localmodel_operator.objects import KubeObject
from localmodel_operator.settings import OperatorSettings

CACHE_MOUNT = "/models"
PVC_MOUNT = "/mnt/model-source"
CACHE_VOLUME, SOURCE_VOLUME, TMP_VOLUME = "model-cache", "model-source", "tmp"
NON_ROOT_UID = 65532  # the backend image's user
BACKEND_CONTAINER = "backend"  # the pod's one container (pod_crashes.py reads its status by this name)


def labels(model: LocalModel) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "localmodel-backend",
        "app.kubernetes.io/instance": model.metadata.name,
        "app.kubernetes.io/managed-by": "localmodel-operator",
        MODEL_LABEL: model.metadata.name,
    }


def selector(model: LocalModel) -> dict[str, str]:
    return {MODEL_LABEL: model.metadata.name}


def selector_string(model: LocalModel) -> str:
    """`status.selector` for the scale subresource (what HPAs read)."""
    return ",".join(f"{key}={value}" for key, value in selector(model).items())


def wanted_replicas(model: LocalModel) -> int:
    return model.spec.initial_replicas


@dataclass(frozen=True)
class Unwanted:
    """A child the operator makes for some specs and not for this one: deleted where it exists."""

    kind: str
    name: str
    reason: str


@dataclass(frozen=True)
class Children:
    wanted: list[KubeObject]
    unwanted: list[Unwanted]

    def names(self) -> dict[str, str]:
        """kind → name, of every child this LocalModel may have (wanted or not)."""
        found = {manifest["kind"]: manifest["metadata"]["name"] for manifest in self.wanted}
        return {**found, **{gone.kind: gone.name for gone in self.unwanted}}


def build_children(model: LocalModel, settings: OperatorSettings, fit: FitCheck | None = None) -> Children:
    """`fit`: the model's fit check (None: not checked, as for an external backend)."""
    name = model.metadata.name
    if model.spec.backend.address:
        why = f"the model is served by its external backend {model.spec.backend.address}"
        kinds = {
            "Deployment": name,
            "Service": name,
            "PersistentVolumeClaim": cache_claim_name(model),
            "NetworkPolicy": name,
        }
        return Children([], [Unwanted(kind, child, why) for kind, child in kinds.items()])
    if fit is not None and fit.refused:
        # No pods for a spec that cannot fit. A cache claim and a NetworkPolicy stay as they are: the
        # next spec (a smaller context, more GPUs) most likely wants them again, the download included.
        why = "the model does not fit (condition Fits)"
        return Children([], [Unwanted("Deployment", name, why), Unwanted("Service", name, why)])
    source = model_source(model)
    wanted = [build_deployment(model, source, settings, fit), build_service(model, settings)]
    unwanted = []
    claim = build_cache_claim(model, source, settings)
    if claim is not None:
        wanted.insert(0, claim)
    else:
        why = (
            "the model source is not downloaded"
            if settings.model_cache.kind == "pvc"
            else f"the model cache is {settings.model_cache.kind!r}, not a claim per model"
        )
        unwanted.append(Unwanted("PersistentVolumeClaim", cache_claim_name(model), why))
    if settings.network_policy.enabled:
        wanted.append(build_network_policy(model, settings))
    else:
        unwanted.append(Unwanted("NetworkPolicy", name, "network policies are off in the operator settings"))
    return Children(wanted, unwanted)


def model_source(model: LocalModel) -> Source:
    """The spec's model URL as a typed source; raises SourceError (an invalid spec) for a bad URL."""
    assert model.spec.model is not None, "an external backend has no model source"  # callers check first
    # Relative file: paths mean the backend container's root; there is no manifest folder in a cluster.
    return parse_source(model.spec.model.url, base_dir=Path("/"))


def build_deployment(
    model: LocalModel, source: Source, settings: OperatorSettings, fit: FitCheck | None = None
) -> KubeObject:
    """The backend pods' Deployment; `source` is `model_source(model)`, `fit` its fit check."""
    spec = served_spec(model.spec, fit)
    where = placement(spec, settings)
    model_path, volumes, mounts, init_containers = _model_file(model, source, settings, where.image)
    command = backend_command(
        spec, model_path, f"0.0.0.0:{settings.grpc_port}", metrics_port=settings.backend_metrics_port
    )
    port = settings.grpc_port
    ports = [{"name": "grpc", "containerPort": port, "protocol": "TCP"}]
    if settings.backend_metrics_port is not None:
        ports.append({"name": "metrics", "containerPort": settings.backend_metrics_port, "protocol": "TCP"})
    container: KubeObject = {
        "name": BACKEND_CONTAINER,
        "image": where.image,
        # Arguments only: each engine's image has the engine table's entry point as its ENTRYPOINT
        # (`command.argv` is what local mode runs), and an image named in spec.backend.image keeps its own.
        "args": list(command.args),
        "env": [{"name": name, "value": value} for name, value in command.env.items()],
        "ports": ports,
        # Native gRPC probes ask the backend's grpc.health.v1 service: SERVING once the model is loaded.
        "startupProbe": _grpc_probe(port, period=10, failures=max(1, settings.startup_seconds // 10)),
        "readinessProbe": _grpc_probe(port, period=5, failures=2),
        "livenessProbe": _grpc_probe(port, period=10, failures=3),
        "resources": _resources(model, settings, where.limits, fit.memory_request if fit else None),
        "securityContext": _container_security(),
        "volumeMounts": [*mounts, {"name": TMP_VOLUME, "mountPath": "/tmp"}],
        # A backend that dies (a llama.cpp segfault, an abort) writes no termination message file: keep
        # its last log lines in the pod's status instead, where the operator turns them into a condition.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: KubeObject = {
        "containers": [container],
        "initContainers": init_containers,
        "volumes": [*volumes, {"name": TMP_VOLUME, "emptyDir": {}}],
        "nodeSelector": where.node_selector,
        "tolerations": where.tolerations,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "fsGroup": NON_ROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,  # backends never call the Kubernetes API
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
    }
    if where.runtime_class_name:
        pod_spec["runtimeClassName"] = where.runtime_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(model),
        "spec": {
            "replicas": wanted_replicas(model),
            "selector": {"matchLabels": selector(model)},
            # One new pod at a time and none removed before its replacement is ready: a rollout never
            # lowers the ready replicas (requests keep being served during a spec change).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels(model)}, "spec": _drop_empty(pod_spec)},
        },
    }


def build_service(model: LocalModel, settings: OperatorSettings) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(model),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(model),
            "ports": [
                {
                    "name": "grpc",
                    "port": settings.grpc_port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                }
            ],
        },
    }


def build_network_policy(model: LocalModel, settings: OperatorSettings) -> KubeObject:
    """Only the routers reach a backend's gRPC port: it has no authentication of its own, and the
    router is where API keys and admission are. The metrics port (if any) is open to scrapers.
    Kubelet probes come from the node and are not subject to NetworkPolicies in common CNIs."""
    network = settings.network_policy
    routers = {
        "namespaceSelector": {
            "matchLabels": {
                "kubernetes.io/metadata.name": network.router_namespace or model.metadata.namespace
            }
        },
        "podSelector": {"matchLabels": dict(network.router_pod_labels)},
    }
    ingress: list[KubeObject] = [{"from": [routers], "ports": [{"port": "grpc", "protocol": "TCP"}]}]
    if settings.backend_metrics_port is not None:
        ingress.append({"ports": [{"port": "metrics", "protocol": "TCP"}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(model),
        "spec": {
            "podSelector": {"matchLabels": selector(model)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def build_cache_claim(model: LocalModel, source: Source, settings: OperatorSettings) -> KubeObject | None:
    """The per-model PersistentVolumeClaim (model cache `pvc` and a source that is downloaded), else None."""
    cache = settings.model_cache
    if cache.kind != "pvc" or not source.downloads:
        return None
    claim: KubeObject = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {**_metadata(model), "name": cache_claim_name(model)},
        "spec": {"accessModes": list(cache.access_modes), "resources": {"requests": {"storage": cache.size}}},
    }
    if cache.storage_class_name:
        claim["spec"]["storageClassName"] = cache.storage_class_name
    return claim


def cache_claim_name(model: LocalModel) -> str:
    return f"{model.metadata.name[:51]}-model-cache"


def _model_file(
    model: LocalModel, source: Source, settings: OperatorSettings, image: str
) -> tuple[str, list[KubeObject], list[KubeObject], list[KubeObject]]:
    """(path of the model, a file or a directory, in the backend container; volumes, backend mounts, init
    containers) per source.

    The one place a source's type decides the pod's layout (mypy checks every type has a case).
    """
    assert model.spec.model is not None
    sha256 = model.spec.model.sha256
    cache_mount = {"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT}
    volume: KubeObject | None
    mount: KubeObject | None
    match source:
        case HttpSource() | HuggingFaceSource():
            # `source.downloads`: an init container fetches it into the cache before the backend starts.
            path = str(ModelCache(Path(CACHE_MOUNT)).source_path(source))
            fetch = _fetch_container(model, source.url, sha256, image, [cache_mount])
            return path, [_cache_volume(model, settings)], [{**cache_mount, "readOnly": True}], [fetch]
        case PvcSource(claim=claim, path=in_claim):
            path = str(PurePosixPath(PVC_MOUNT) / in_claim)
            volume = {"name": SOURCE_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            mount = {"name": SOURCE_VOLUME, "mountPath": PVC_MOUNT, "readOnly": True}
        case FileSource():
            path, volume, mount = str(source.path), None, None  # in the image (or a volume the user adds)
        case _:
            assert_never(source)
    if sha256 is None or source.is_directory:  # a directory has no one checksum (the spec refuses one)
        return path, [volume] if volume else [], [mount] if mount else [], []
    # Checked before the backend starts, like a download; the cache volume only keeps the verification stamp.
    verify = _fetch_container(model, f"file://{path}", sha256, image, [m for m in (mount, cache_mount) if m])
    volumes = [v for v in (volume, {"name": CACHE_VOLUME, "emptyDir": {}}) if v]
    return path, volumes, [mount] if mount else [], [verify]


def _cache_volume(model: LocalModel, settings: OperatorSettings) -> KubeObject:
    cache = settings.model_cache
    if cache.kind == "pvc":
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache_claim_name(model)}}
    if cache.kind == "shared" and cache.shared_claim_name:
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache.shared_claim_name}}
    return {"name": CACHE_VOLUME, "emptyDir": {}}


def _fetch_container(
    model: LocalModel, url: str, sha256: str | None, image: str, mounts: list[KubeObject]
) -> KubeObject:
    args = ["fetch", url, "--cache-dir", CACHE_MOUNT, *(["--sha256", sha256] if sha256 else [])]
    return {
        "name": "fetch-model",
        "image": image,
        "command": ["localmodel"],
        "args": args,
        # HF_TOKEN and proxies come from the model's env, as for the backend.
        "env": [{"name": v.name, "value": v.value} for v in model.spec.env],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": _container_security(),
        "volumeMounts": [*mounts, {"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }


def _grpc_probe(port: int, period: int, failures: int) -> KubeObject:
    return {
        "grpc": {"port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def _resources(
    model: LocalModel, settings: OperatorSettings, device_limits: dict[str, str], planned_memory: str | None
) -> KubeObject:
    """`planned_memory`: the fit plan's RAM, used where the spec gives no memory."""
    wanted = model.spec.resources
    memory = wanted.memory or planned_memory or settings.memory_request
    requests = {"cpu": wanted.cpu or settings.cpu_request, "memory": memory}
    if planned_memory is not None and wanted.memory is None:
        # A planned figure is a request only: it places the pod on a node with that much memory free
        # (scheduling). As a limit, an estimate that is a little low (compute buffers are estimated)
        # would get a backend that fits killed; a spec that wants a hard cap says resources.memory.
        return (
            {"requests": requests, "limits": dict(device_limits)} if device_limits else {"requests": requests}
        )
    # Memory is limited to what is asked (a model that outgrows it is killed, not the node); CPU is not
    # limited, since throttling a busy decode loop only makes it slower.
    limits = {"memory": memory, **device_limits}
    return {"requests": requests, "limits": limits}


def _container_security() -> KubeObject:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _metadata(model: LocalModel) -> KubeObject:
    return {"name": model.metadata.name, "namespace": model.metadata.namespace, "labels": labels(model)}


def _drop_empty(pod_spec: KubeObject) -> KubeObject:
    return {key: value for key, value in pod_spec.items() if value not in ({}, [], None)}
