"""The one mapping from a LocalModel spec to the backend's command line and environment.

Local mode runs it as a process (`python -m <the engine's module>`); the operator puts the same
arguments into the backend container, whose entry point is the engine's (localmodel/backend_types.py).
Every engine takes the shared command line of localmodel/backend_server.py; the llama.cpp engine adds
its own flags, and the engine options that only it has are refused for the others by the spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from localmodel.backend_types import BACKENDS, BackendKind, BackendType
from localmodel.spec import LocalModelSpec


@dataclass(frozen=True)
class BackendCommand:
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    kind: BackendKind = BACKENDS[BackendType.LLAMA_CPP]

    @property
    def argv(self) -> list[str]:
        """The container's command line: its entry point, then the arguments."""
        return [*self.kind.entry_point, *self.args]


def backend_command(
    spec: LocalModelSpec,
    model_path: str,
    address: str,
    *,
    grace_period: float | None = None,
    default_threads: int | None = None,
    metrics_port: int | None = None,
) -> BackendCommand:
    """Arguments for a backend serving `model_path` (as the backend will see it) on `address`.

    `grace_period`: seconds the backend gives its requests to finish on SIGTERM (its own default if
    None). `default_threads`: the thread count when the spec sets none (else the backend counts the
    CPUs it may use). `metrics_port`: where it serves Prometheus metrics (None: nowhere)."""
    engine = spec.backend.engine
    kind = BACKENDS[spec.backend.type]
    args = ["--addr", address, "--model", model_path]
    llama = kind.type is BackendType.LLAMA_CPP  # the spec refuses llama.cpp's own options for the others
    numeric = {
        "--grace-period": grace_period,
        "--context-size": engine.context_size if llama else None,
        "--threads": engine.threads if engine.threads is not None else default_threads,
        "--batch-size": engine.batch_size if llama else None,
        "--gpu-layers": _gpu_layers(spec) if llama else None,
        "--parallel": engine.parallel,
        "--metrics-port": metrics_port,
    }
    for flag, value in numeric.items():
        if value is not None:
            args += [flag, str(value)]
    if engine.flash_attention is not None:
        args += ["--flash-attention", engine.flash_attention]
    if engine.repack is not None:
        args += ["--repack", engine.repack]
    if spec.loads_embeddings:
        args.append("--embeddings")
    if kind.type is BackendType.FASTER_WHISPER:
        # CTranslate2 runs on a GPU only when told to; without one asked for, the pod has none.
        args += ["--device", "cuda" if spec.resources.gpu is not None else "cpu"]
    for option in engine.options:
        args += ["--option", option]
    args += engine.args  # last, so that a user's extra argument can override any of the above
    return BackendCommand(tuple(args), {variable.name: variable.value for variable in spec.env}, kind)


def with_gpu_layers(spec: LocalModelSpec, layers: int | None) -> LocalModelSpec:
    """`spec` with `gpuLayers: auto` replaced by `layers`, as the caller decided it (None: the default,
    all with GPUs); any other spec as it is. The backend takes only a number."""
    engine = spec.backend.engine
    if engine.gpu_layers != "auto":
        return spec
    backend = spec.backend.model_copy(update={"engine": engine.model_copy(update={"gpu_layers": layers})})
    return spec.model_copy(update={"backend": backend})


def _gpu_layers(spec: LocalModelSpec) -> int | None:
    """With GPUs and no explicit choice, offload every layer: that is what the GPUs were asked for.
    `auto` is not the backend's to decide: the caller's fit plan puts its number in the spec first."""
    layers = spec.backend.engine.gpu_layers
    if layers == "auto":
        # The backend's --gpu-layers takes a number; passing "auto" on would fail at its start instead.
        raise ValueError(
            "gpuLayers auto: replace it with the fit plan's layer count before building the command"
        )
    if layers is not None:
        return layers
    return -1 if spec.resources.gpu is not None else None
