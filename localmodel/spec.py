"""The `LocalModel` resource (`localmodel.dev/v1alpha1`): the one definition of its spec.

Local mode, the operator and the CRD's schema all read these models. Field names are the manifest's
camelCase; Python code uses the snake_case attributes. Validation messages name the field, since users
meet them as `kubectl apply` or `localmodel serve` errors.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel, to_snake

from localmodel.backend_types import BACKENDS, BackendType, Task, unservable_tasks
from localmodel.sources import names_directory

__all__ = ["BackendType", "Task"]  # defined with the backend table, part of the spec

API_GROUP = "localmodel.dev"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "LocalModel"

# Kubernetes object names (RFC 1123 labels, as Services require: the model's Service takes its name).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# What clients send as `model`: OpenAI-style names such as `org/model:tag`, never whitespace.
SERVED_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
SHA256_HEX = r"^[a-f0-9]{64}$"
# Kubernetes resource quantities (`500m`, `2`, `4Gi`, `1.5`).
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
URL_SCHEMES = ("file", "http", "https", "hf", "pvc")
# On every object the operator makes for a LocalModel (pods, Service, EndpointSlices via the Service):
# what the Service, `status.selector` and the router's discovery select on.
MODEL_LABEL = f"{API_GROUP}/model"


class SpecModel(BaseModel):
    """camelCase in manifests, snake_case in code; unknown fields are errors (a typo must not pass)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# No advertised task that answers 501: localmodel's llama.cpp backend has no reranking yet (no reranker
# model is tested), so `rerank` is for a backend that has it (a LocalAI reranker, by address or image).
RERANK_NEEDS_A_BACKEND = (
    "tasks: rerank needs a backend that reranks (`backend.address` or `backend.image`): localmodel's "
    "llama.cpp backend does not rerank yet"
)


def gpu_not_served_message(backend_type: BackendType, vendor: str) -> str:
    kind = BACKENDS[backend_type]
    gpus = ", ".join(sorted(kind.accelerators - {"cpu"})) or "none"
    return (
        f"backend type {backend_type} has no image for {vendor} GPUs (its GPUs: {gpus}); drop "
        "resources.gpu, or name an image of your own in backend.image"
    )


def tasks_not_served_message(backend_type: BackendType, tasks: list[Task]) -> str:
    served = ", ".join(sorted(BACKENDS[backend_type].tasks))
    return (
        f"backend type {backend_type} does not serve {', '.join(tasks)}: it serves {served} "
        "(set backend.type to an engine that does)"
    )


class ModelSource(SpecModel):
    url: str = Field(
        pattern=rf"^({'|'.join(URL_SCHEMES)}):",
        max_length=2048,  # bounds the cost of the CRD's CEL rules that match it
        description=(
            "Where the model comes from: a file, `https://host/path/file.gguf`, "
            "`hf://org/repo/file.gguf` (`hf://org/repo@revision/file.gguf` for a revision), "
            "`pvc://claim/path/file.gguf` (cluster only), `file:///absolute/path.gguf`, "
            "or `file:relative/path.gguf` (local mode: relative to the manifest); or a directory (an "
            "engine whose model is several files): `hf://org/repo` (the whole repository), "
            "`pvc://claim/dir/` or `file:///dir/` (ending in /)."
        ),
    )
    sha256: str | None = Field(
        default=None,
        pattern=SHA256_HEX,
        description="Expected SHA-256 of the file (lowercase hex); checked after download.",
    )

    @field_validator("sha256", mode="before")
    @classmethod
    def _quoted(cls, value: object) -> object:
        # A checksum of digits only is a number to YAML: "should be a string" would not say why.
        if isinstance(value, int | float):
            raise ValueError('quote the sha256 (sha256: "..."): YAML read these digits as a number')
        return value


# Bounds that catch a typo before a backend tries it: 16 Mi tokens is above the longest context any GGUF
# model is trained for today (10 M), and the backend contract carries these as int32.
MAX_CONTEXT_SIZE = 2**24
MAX_THREADS = 1024


class EngineOptions(SpecModel):
    """How the backend runs the model; zero or unset means the backend's own default."""

    context_size: int | None = Field(
        default=None, ge=1, le=MAX_CONTEXT_SIZE, description="KV cache size in tokens (default 4096)."
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        le=MAX_THREADS,
        description="CPU threads (default: the CPUs the backend may use; in a pod, its limit).",
    )
    gpu_layers: Annotated[int, Field(ge=-1)] | Literal["auto"] | None = Field(
        default=None,
        description="Layers offloaded to the GPU: a count, -1 for all, or `auto`: as many as the fit plan "
        "says the GPUs hold (in a cluster, the operator's plan; default: all with a GPU).",
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=MAX_CONTEXT_SIZE, description="Prompt tokens per decode step (default 512)."
    )
    parallel: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Requests decoded together (slots) by one replica (default 1).",
    )
    flash_attention: Literal["on", "off", "auto"] | None = Field(default=None, description="Flash attention.")
    repack: Literal["auto", "on", "off"] | None = Field(
        default=None,
        description="Weights in llama.cpp's repacked (faster-kernel) CPU buffers. auto (default): on, except "
        "where llama.cpp's AMX kernels would run (Intel Sapphire Rapids and newer with an AMX build), which "
        "crash (llama.cpp issue 20824).",
    )
    options: list[str] = Field(
        default_factory=list, description="Backend options as `key:value` (e.g. `pooling:mean`)."
    )
    args: list[str] = Field(default_factory=list, description="Extra command-line arguments for the backend.")

    @field_validator("gpu_layers", mode="before")
    @classmethod
    def _layer_count_or_auto(cls, value: object) -> object:
        # One message for both arms of the union (pydantic would report each arm's failure).
        if value is None or value == "auto":
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= -1:
            return value
        raise ValueError(f"expected a layer count (0 or more, -1 for all) or `auto`, not {value!r}")


# Engine options only llama.cpp has (camelCase, as manifests and the CRD's rules name them); the other
# engines take threads, parallel, options and args.
LLAMA_CPP_ONLY_OPTIONS = ("contextSize", "gpuLayers", "batchSize", "flashAttention", "repack")


class BackendSpec(SpecModel):
    type: BackendType = Field(
        default=BackendType.LLAMA_CPP,
        description="The engine: llama-cpp (GGUF text models: chat, completion, embedding), faster-whisper "
        "(speech to text: transcription) or piper (text to speech: speech).",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        description="Backend container image (default: the operator's image of the engine for the "
        "accelerator). Local mode always runs the engine of this installation.",
    )
    address: str | None = Field(
        default=None,
        pattern=r"^[^\s:]+:[0-9]{1,5}$",
        description="An external gRPC backend (`host:port`) serving the model already: nothing is started, "
        "requests are routed there (bring your own backend).",
    )
    engine: EngineOptions = Field(default_factory=EngineOptions, description="Engine options.")

    @model_validator(mode="after")
    def _image_or_address(self) -> BackendSpec:
        if self.image is not None and self.address is not None:
            raise ValueError("set `image` (a backend to run) or `address` (one running already), not both")
        return self


class GpuVendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"


class GpuResources(SpecModel):
    count: int = Field(default=1, ge=1, description="GPUs per replica.")
    vendor: GpuVendor = Field(
        default=GpuVendor.NVIDIA, description="Which vendor's GPUs (and device plugin)."
    )


class Resources(SpecModel):
    cpu: Annotated[str, Field(pattern=QUANTITY)] | None = Field(
        default=None, description="CPU per replica (Kubernetes quantity, e.g. `2` or `500m`)."
    )
    memory: Annotated[str, Field(pattern=QUANTITY)] | None = Field(
        default=None, description="Memory per replica (Kubernetes quantity, e.g. `4Gi`)."
    )
    gpu: GpuResources | None = Field(default=None, description="GPUs per replica; unset: CPU only.")


class Toleration(SpecModel):
    """A Kubernetes toleration (same fields)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class EnvVar(SpecModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", description="Variable name.")
    value: str = Field(default="", description="Value.")


class BalancingStrategy(StrEnum):
    LEAST_OUTSTANDING = "LeastOutstanding"
    PREFIX_HASH = "PrefixHash"


class PrefixHashOptions(SpecModel):
    """Consistent hashing with bounded load over a prompt prefix (KV-cache affinity)."""

    prefix_char_length: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="Characters of the first user message (after any system prompt) that pick the replica.",
    )
    mean_load_factor: int = Field(
        default=125,
        ge=100,
        le=1000,
        description="A replica takes a prefix only while its requests stay below this percentage of the "
        "mean load (plus one); otherwise the next replica on the ring does.",
    )
    replication: int = Field(default=256, ge=1, le=1024, description="Points per replica on the hash ring.")


class LoadBalancing(SpecModel):
    strategy: BalancingStrategy = Field(
        default=BalancingStrategy.LEAST_OUTSTANDING,
        description="LeastOutstanding: the replica with fewest requests in flight. PrefixHash: the same "
        "conversation goes back to the replica that holds its KV cache, within a load bound.",
    )
    prefix_hash: PrefixHashOptions = Field(
        default_factory=PrefixHashOptions, description="Options of the PrefixHash strategy."
    )


class Autoscaling(SpecModel):
    """The operator's autoscaler: replicas follow the router's requests per model."""

    enabled: bool = Field(
        default=True,
        description="Let the operator set `replicas` between minReplicas and maxReplicas from the "
        "router's load. false: something else (an HPA, KEDA) drives the scale subresource.",
    )
    target_requests: int | None = Field(
        default=None,
        ge=1,
        description="Requests (running and waiting) per replica to aim at (default: "
        "`backend.engine.parallel`, or 1).",
    )
    window_seconds: int = Field(
        default=60, ge=1, le=3600, description="Load is averaged over this many seconds."
    )


class LocalModelSpec(SpecModel):
    model: ModelSource | None = Field(
        default=None,
        description="The model to serve (a GGUF file for llama-cpp, a directory for faster-whisper, a "
        "voice directory or .onnx file for piper). Required unless `backend.address` is set.",
    )
    served_name: str | None = Field(
        default=None,
        pattern=SERVED_NAME,
        max_length=253,
        description="The name clients send as `model` (default: metadata.name).",
    )
    aliases: list[Annotated[str, Field(pattern=SERVED_NAME, max_length=253)]] = Field(
        default_factory=list, description="Other names that reach this model."
    )
    tasks: list[Task] = Field(
        default_factory=list,
        min_length=1,
        description="What the model serves: chat, completion, embedding, rerank (llama-cpp; default chat "
        "and completion), transcription (faster-whisper, its default), speech (piper, its default).",
    )
    backend: BackendSpec = Field(
        default_factory=BackendSpec, description="Which backend runs the model, and how."
    )
    replicas: int | None = Field(
        default=None, ge=0, description="Backend replicas wanted now (default: minReplicas). Scalable."
    )
    min_replicas: int = Field(default=1, ge=0, description="Fewest replicas; 0 scales to zero when idle.")
    max_replicas: int | None = Field(
        default=None,
        ge=1,
        description="Most replicas (default: the larger of replicas and minReplicas, or 1).",
    )
    scale_down_delay_seconds: int = Field(
        default=300, ge=0, description="Idle time before replicas are removed (down to minReplicas)."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, description="Cap on tokens generated per request (default: no cap)."
    )
    load_balancing: LoadBalancing = Field(
        default_factory=LoadBalancing, description="How the router picks a replica for a request."
    )
    autoscaling: Autoscaling = Field(
        default_factory=Autoscaling, description="How replicas follow load (between min and max)."
    )
    resources: Resources = Field(default_factory=Resources, description="Per-replica resources.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels replicas require.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints replicas tolerate.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment variables for the backend.")

    @model_validator(mode="before")
    @classmethod
    def _default_tasks(cls, data: object) -> object:
        # What a model serves by default is its engine's (a Whisper model does not chat).
        if isinstance(data, dict) and "tasks" not in data:
            backend = data.get("backend") or {}
            backend_type = backend.type if isinstance(backend, BackendSpec) else backend.get("type")
            try:
                kind = BACKENDS[BackendType(backend_type or BackendType.LLAMA_CPP)]
            except ValueError:
                return data  # an unknown type: the field's own error says which are known
            data = {**data, "tasks": list(kind.default_tasks)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> LocalModelSpec:
        if self.model is None and self.backend.address is None:
            raise ValueError("`model` is required unless `backend.address` names a running backend")
        if self.max_replicas is not None:
            if self.min_replicas > self.max_replicas:
                raise ValueError(f"minReplicas {self.min_replicas} exceeds maxReplicas {self.max_replicas}")
            if self.replicas is not None and self.replicas > self.max_replicas:
                raise ValueError(f"replicas {self.replicas} exceeds maxReplicas {self.max_replicas}")
        if self.replicas is not None and self.replicas < self.min_replicas:
            raise ValueError(f"replicas {self.replicas} is below minReplicas {self.min_replicas}")
        if Task.RERANK in self.tasks and not (self.backend.address or self.backend.image):
            raise ValueError(RERANK_NEEDS_A_BACKEND)
        if self.backend.address is None:
            self._engine_can_serve()
        return self

    def _engine_can_serve(self) -> None:
        """The engine of `backend.type` serves these tasks, this model's shape, and these GPUs."""
        kind = BACKENDS[self.backend.type]
        if kind.type is not BackendType.LLAMA_CPP:
            engine = self.backend.engine
            given = [name for name in LLAMA_CPP_ONLY_OPTIONS if getattr(engine, to_snake(name)) is not None]
            if given:
                raise ValueError(
                    f"backend.engine.{given[0]} is a llama-cpp option: backend type {kind.type} takes "
                    "threads, parallel, options and args"
                )
        if unserved := unservable_tasks(self.backend.type, self.tasks):
            raise ValueError(tasks_not_served_message(self.backend.type, unserved))
        if self.model is not None:
            directory = names_directory(self.model.url)
            if directory and kind.model_source == "file":
                raise ValueError(
                    f"backend type {kind.type} serves one model file: model.url {self.model.url} names a "
                    "directory (a URL ending in /, or hf://ORG/REPO without a file)"
                )
            if not directory and kind.model_source == "directory":
                raise ValueError(
                    f"backend type {kind.type} loads a model directory: end model.url with / "
                    "(file:///models/name/, pvc://claim/name/) or name only the repository (hf://ORG/REPO)"
                )
            if directory and self.model.sha256 is not None:
                raise ValueError("model.sha256 checks one file: a directory source takes none")
        gpu = self.resources.gpu
        if gpu is not None and self.backend.image is None and gpu.vendor not in kind.accelerators:
            raise ValueError(gpu_not_served_message(self.backend.type, gpu.vendor))

    @property
    def initial_replicas(self) -> int:
        """Replicas to run before any scaling decision."""
        return self.replicas if self.replicas is not None else self.min_replicas

    @property
    def replica_ceiling(self) -> int:
        if self.max_replicas is not None:
            return self.max_replicas
        return max(self.replicas or 0, self.min_replicas, 1)

    @property
    def target_requests(self) -> int:
        """Requests per replica the autoscaler aims at: as many as one replica decodes at once."""
        return self.autoscaling.target_requests or self.backend.engine.parallel or 1

    @property
    def loads_embeddings(self) -> bool:
        return Task.EMBEDDING in self.tasks or Task.RERANK in self.tasks


class ObjectMeta(BaseModel):
    """The parts of Kubernetes metadata localmodel reads; the rest is kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=DNS_LABEL, max_length=63, description="The LocalModel's name.")
    namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ConditionType(StrEnum):
    READY = "Ready"  # serving: at least one ready replica (or an external backend)
    MODEL_AVAILABLE = "ModelAvailable"  # the model file was fetched (init containers finished)
    PROGRESSING = "Progressing"  # a rollout or scale is under way
    DEGRADED = "Degraded"  # fewer ready replicas than wanted, or the spec cannot be served
    FITS = "Fits"  # the fit plan: the model fits its GPUs and RAM (Unknown: not planned)


class Condition(SpecModel):
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str | None = Field(default=None, description="RFC 3339 time of the last change.")
    observed_generation: int | None = Field(default=None, ge=0)


# Byte counts reach hundreds of GiB: 64-bit in the schema (what kubectl and clients expect of them).
Bytes = Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})]


class DevicePlan(SpecModel):
    """One device's share of the fit plan."""

    model_config = ConfigDict(extra="ignore")

    device: str = Field(description="CPU, GPU0, GPU1, ...")
    layers: int = Field(ge=0, description="Layers placed here, of the model's layers (output counted).")
    total_bytes: Bytes = Field(description="Weights, KV cache, compute buffers and overhead here.")
    capacity_bytes: Bytes | None = Field(
        default=None, description="What the device has (RAM: the memory limit); unset: not checked."
    )


class FitPlanStatus(SpecModel):
    """The operator's fit plan for the spec, from the model file's header (localmodel/fit.py)."""

    model_config = ConfigDict(extra="ignore")

    verdict: Literal["cpu", "gpu", "partial", "none"] = Field(
        description="cpu: all in RAM; gpu: all layers on the GPUs; partial: gpuLayers of them; none: no fit."
    )
    reason: str = Field(description="Why, with the figures.")
    gpu_layers: int = Field(ge=0, description="Layers offloaded to the GPUs (what `auto` becomes).")
    layers: int = Field(ge=0, description="The model's layers, the output layer counted.")
    weights_bytes: Bytes = Field(description="Weights, on every device.")
    kv_cache_bytes: Bytes = Field(description="KV cache, on every device.")
    compute_bytes: Bytes = Field(description="Compute and output buffers, on every device.")
    total_bytes: Bytes = Field(description="All of it, overheads included.")
    devices: list[DevicePlan] = Field(default_factory=list, description="Per device, the CPU first.")


class LocalModelStatus(SpecModel):
    """Written by the operator; read by `kubectl get` (printer columns), HPAs (scale) and the router."""

    model_config = ConfigDict(extra="ignore")

    conditions: list[Condition] = Field(default_factory=list)
    replicas: int = Field(default=0, ge=0, description="Backend pods that exist.")
    ready_replicas: int = Field(default=0, ge=0, description="Backend pods that are ready.")
    selector: str | None = Field(default=None, description="Label selector of the backend pods (scale).")
    observed_generation: int | None = Field(default=None, ge=0)
    served_name: str | None = Field(default=None, description="The name clients send as `model`.")
    summary: str | None = Field(default=None, description="One word for `kubectl get`: Ready, Loading, ...")
    plan: FitPlanStatus | None = Field(
        default=None, description="Where the model goes and whether it fits (unset: not planned)."
    )


class LocalModel(SpecModel):
    api_version: Literal["localmodel.dev/v1alpha1"]
    kind: Literal["LocalModel"]
    metadata: ObjectMeta
    spec: LocalModelSpec
    status: LocalModelStatus | None = None

    @property
    def served_name(self) -> str:
        return self.spec.served_name or self.metadata.name
