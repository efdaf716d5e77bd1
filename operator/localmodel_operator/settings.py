"""Operator settings: from `LOCALMODEL_OPERATOR_*` environment variables and an optional YAML file.

Accelerator profiles are a map keyed by name (`cpu`, `nvidia`, `amd`, `intel`), like KubeAI's resource
profiles: a LocalModel asking for GPUs of a vendor gets that profile's image for its engine
(`spec.backend.type`), device-plugin resource, node selector, tolerations and runtime class, each
overridable per model; a GPU profile may say how much memory one of its GPUs has, which the fit plan
checks a model against. A profile's `image` is the llama-cpp engine's (the one engine there was at
first: settings written then read the same); `images` names the other engines', and an engine it does
not name gets its default image, `<repository>:<version><suffix>` from the engine table
(localmodel/backend_types.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from localmodel import __version__, settings_file
from localmodel.backend_types import BACKENDS, BackendType
from localmodel.quantities import parse_bytes


def default_image(backend_type: BackendType, accelerator: str) -> str | None:
    """The image of this release for an engine on an accelerator; None: the engine has none for it."""
    kind = BACKENDS[backend_type]
    suffix = kind.image_suffixes.get(accelerator)
    return None if suffix is None else f"{kind.image_repository}:{__version__}{suffix}"


class AcceleratorProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="the llama-cpp engine's backend image for this accelerator")
    images: dict[BackendType, str] = Field(
        default_factory=dict,
        description="the other engines' images for this accelerator, by `spec.backend.type` (an engine not "
        "named: its default image, `default_image`); llama-cpp's is `image`",
    )
    resource_name: str | None = Field(
        default=None, description="device-plugin resource limited per GPU (e.g. nvidia.com/gpu); None: CPU"
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="node labels the pods require")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="taints the pods tolerate")
    runtime_class_name: str | None = Field(default=None, description="RuntimeClass (e.g. nvidia)")
    gpu_memory: str | None = Field(
        default=None,
        description="memory of one GPU of this profile, a Kubernetes quantity (e.g. 24Gi, 80Gi): what the "
        "fit plan checks each GPU against; None: GPUs are not checked (their size differs per cluster, so "
        "there is no default)",
    )

    @field_validator("gpu_memory")
    @classmethod
    def _a_size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bytes(value)  # raises ValueError with what a size looks like
        return value

    @field_validator("images")
    @classmethod
    def _other_engines(cls, images: dict[BackendType, str]) -> dict[BackendType, str]:
        if BackendType.LLAMA_CPP in images:
            raise ValueError("the llama-cpp engine's image is the profile's `image`, not one of `images`")
        return images

    @property
    def gpu_memory_bytes(self) -> int | None:
        return parse_bytes(self.gpu_memory) if self.gpu_memory is not None else None

    def image_for(self, backend_type: BackendType, name: str) -> str | None:
        """The image of an engine on this profile (`name`: the profile's); None: there is none."""
        if backend_type is BackendType.LLAMA_CPP:
            return self.image
        return self.images.get(backend_type) or default_image(backend_type, name)


def _default_profiles() -> dict[str, AcceleratorProfile]:
    """Every engine's images of this release, per accelerator (written out, as the chart's values are)."""
    resources = {"cpu": None, "nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "intel": "gpu.intel.com/i915"}
    profiles = {}
    for name, resource in resources.items():
        images: dict[BackendType, str] = {
            backend_type: image
            for backend_type in BACKENDS
            if backend_type is not BackendType.LLAMA_CPP
            and (image := default_image(backend_type, name)) is not None
        }
        llama_cpp = default_image(BackendType.LLAMA_CPP, name)
        assert llama_cpp is not None, "the llama-cpp engine has an image for every accelerator"
        # GPU nodes are commonly tainted with the device resource name, so that only GPU pods land there.
        tolerations = [{"key": resource, "operator": "Exists", "effect": "NoSchedule"}] if resource else []
        profiles[name] = AcceleratorProfile(
            image=llama_cpp, images=images, resource_name=resource, tolerations=tolerations
        )
    return profiles


class ModelCacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["emptyDir", "pvc", "shared"] = Field(
        default="emptyDir",
        description="emptyDir: each pod fetches the model (works everywhere); pvc: one claim per model, "
        "kept across restarts; shared: one existing claim for every model (ReadWriteMany)",
    )
    size: str = Field(default="20Gi", description="size of a per-model claim (pvc)")
    storage_class_name: str | None = Field(default=None, description="storage class of per-model claims")
    access_modes: list[str] = Field(
        default_factory=lambda: ["ReadWriteOnce"], description="access modes of per-model claims"
    )
    shared_claim_name: str | None = Field(default=None, description="the existing claim (shared)")


class AutoscalerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="scale LocalModels from the routers' load")
    interval_seconds: float = Field(default=5.0, gt=0, description="how often each model's load is sampled")
    router_urls: list[str] = Field(
        default_factory=list, description="router base URLs whose `/load` is read (e.g. in tests)"
    )
    router_service: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9-]+/[a-z0-9-]+$",
        description="`namespace/name` of the router's Service: every ready router replica behind it is read",
    )
    router_port_name: str = Field(default="http", description="the router Service's HTTP port name")

    @property
    def has_routers(self) -> bool:
        return bool(self.router_urls or self.router_service)


class BackendNetworkSettings(BaseModel):
    """Who may connect to backend pods. A backend has no authentication of its own: with this on, each
    LocalModel gets a NetworkPolicy admitting only router pods to its gRPC port (and anyone to its
    metrics port, where Prometheus may run anywhere)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="write a NetworkPolicy for each LocalModel's pods")
    router_namespace: str | None = Field(
        default=None, description="the routers' namespace (None: the LocalModel's own)"
    )
    router_pod_labels: dict[str, str] = Field(
        default_factory=dict, description="labels selecting the router pods (required when enabled)"
    )

    @model_validator(mode="after")
    def _routers_named(self) -> BackendNetworkSettings:
        if self.enabled and not self.router_pod_labels:
            raise ValueError("network_policy.router_pod_labels: name the router pods' labels")
        return self


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOCALMODEL_OPERATOR_", env_nested_delimiter="__", extra="forbid"
    )

    namespaces: list[str] = Field(
        default_factory=list, description="namespaces to watch; empty: every namespace (cluster-wide)"
    )
    accelerators: dict[str, AcceleratorProfile] = Field(
        default_factory=_default_profiles, description="profiles keyed by `cpu` and GPU vendor"
    )
    cpu_request: str = Field(default="1", description="CPU request of a backend without spec.resources.cpu")
    memory_request: str = Field(
        default="1Gi", description="memory request of a backend without spec.resources.memory"
    )
    model_cache: ModelCacheSettings = Field(default_factory=ModelCacheSettings)
    autoscaler: AutoscalerSettings = Field(default_factory=AutoscalerSettings)
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="serve Prometheus metrics on this port; None: not at all"
    )
    grpc_port: int = Field(default=50051, ge=1, le=65535, description="the backends' gRPC port")
    backend_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="the port each backend serves Prometheus metrics on (container port `metrics`); "
        "None: not at all",
    )
    network_policy: BackendNetworkSettings = Field(default_factory=BackendNetworkSettings)
    startup_seconds: int = Field(
        default=1800,
        ge=10,
        description="how long a backend may take to fetch and load its model before Kubernetes restarts it "
        "(large models on slow disks take many minutes)",
    )
    termination_grace_seconds: int = Field(
        default=45,
        ge=0,
        description="for requests in flight when a backend pod stops (backend grace + margin)",
    )

    @model_validator(mode="after")
    def _engines_on_their_accelerators(self) -> OperatorSettings:
        # A LocalModel asking for an engine on GPUs it has no image for is refused by the spec (unless it
        # names spec.backend.image): an image for that pair here would never be used.
        for name, profile in self.accelerators.items():
            for backend_type in profile.images:
                if default_image(backend_type, name) is None:
                    runs_on = ", ".join(sorted(BACKENDS[backend_type].accelerators))
                    raise ValueError(
                        f"accelerators.{name}.images.{backend_type}: backend type {backend_type} has "
                        f"images for {runs_on} only (a LocalModel asking for it on {name} GPUs is refused "
                        "unless it names spec.backend.image)"
                    )
        return self


def load_settings(path: Path | None) -> OperatorSettings:
    """Settings from the YAML file (if any); `LOCALMODEL_OPERATOR_*` variables set what it leaves out.

    SettingsFileError names a file that cannot be read or parsed; ValidationError, values that do not fit.
    """
    return settings_file.load_settings(OperatorSettings, path, what="operator settings")
