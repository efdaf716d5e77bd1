"""Does a LocalModel fit the GPUs and memory it asks for? The fit plan at reconcile, and what it decides.

The plan (localmodel/fit.py) is made from the model file's header and the spec's settings
(localmodel/fit_inputs.py, the mapping `localmodel plan` and local mode use too), against each GPU's
memory from the accelerator profile and the spec's memory limit. What comes of it:

- the `Fits` condition: True (with the plan's figures), False (`DoesNotFit`: the operator refuses the
  spec and runs no pods), or Unknown where nothing was planned (`NotPlanned`: an engine other than
  llama.cpp, whose model is no GGUF file, a source the operator cannot read, GPUs of unknown size, a
  model the planner cannot count; `HeaderUnreadable`: the read failed). Unknown never blocks serving:
  pods are made as without a plan;
- `gpuLayers: auto` becomes the plan's layer count (without a plan, the default: all with GPUs);
- a memory request from the plan where the spec gives no `resources.memory`.

Everything here is pure except `check_fit`, which awaits the header from the reader it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from localmodel.backend_types import BackendType
from localmodel.command import with_gpu_layers
from localmodel.fit import MIB, FitError, FitPlan, plan_fit
from localmodel.fit_inputs import plan_input
from localmodel.gguf_header import GGUFHeader, HeaderError
from localmodel.quantities import parse_bytes
from localmodel.sources import Source
from localmodel.spec import DevicePlan, FitPlanStatus, LocalModel, LocalModelSpec
from localmodel_operator.accelerators import profile_for, profile_name
from localmodel_operator.model_headers import HeaderReader
from localmodel_operator.settings import OperatorSettings

FITS, DOES_NOT_FIT, NOT_PLANNED, HEADER_UNREADABLE = "Fits", "DoesNotFit", "NotPlanned", "HeaderUnreadable"


@dataclass(frozen=True)
class FitCheck:
    """The `Fits` condition and the plan behind it (None: not planned)."""

    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    plan: FitPlan | None = None

    @property
    def refused(self) -> bool:
        return self.status == "False"

    @property
    def condition(self) -> tuple[str, str, str]:
        return self.status, self.reason, self.message

    @property
    def memory_request(self) -> str | None:
        """What the plan puts in RAM (every CPU-side buffer and the process), in whole MiB."""
        if self.plan is None:
            return None
        return f"{math.ceil(self.plan.devices[0].total_bytes / MIB)}Mi"

    def plan_status(self) -> dict[str, Any] | None:
        """`status.plan` (None: not planned, which removes an earlier plan from the status)."""
        if self.plan is None:
            return None
        plan = self.plan
        devices = [
            DevicePlan(
                device=use.device,
                layers=use.layers,
                total_bytes=use.total_bytes,
                capacity_bytes=use.capacity_bytes,
            )
            for use in plan.devices
        ]
        status = FitPlanStatus(
            verdict=plan.verdict,
            reason=plan.reason,
            gpu_layers=plan.gpu_layers,
            layers=plan.layers,
            weights_bytes=plan.weights_bytes,
            kv_cache_bytes=plan.kv_cache_bytes,
            compute_bytes=plan.compute_bytes,
            total_bytes=plan.total_bytes,
            devices=devices,
        )
        return status.model_dump(by_alias=True, exclude_none=True)


async def check_fit(
    model: LocalModel, source: Source, settings: OperatorSettings, headers: HeaderReader
) -> FitCheck:
    """The fit check of a LocalModel served from `source` (its parsed model URL). Raises
    UnknownAcceleratorError for GPUs of a vendor without a profile; every other problem is Unknown."""
    spec = model.spec
    gpu_memory = profile_for(spec, settings).gpu_memory_bytes
    if spec.backend.type is not BackendType.LLAMA_CPP:
        return _unplanned(
            spec,
            f"the fit plan reads GGUF files: {spec.backend.type} models are not planned (their memory "
            f"request is resources.memory, else the operator's {settings.memory_request})",
        )
    if not source.downloads:
        return _unplanned(
            spec,
            f"{source.url} is read where the backend runs (a claim or the image), not by the operator: "
            "the fit is not checked",
        )
    if spec.resources.gpu is not None and gpu_memory is None:
        name = profile_name(spec)
        return _unplanned(
            spec,
            f"the {name} accelerator profile gives no gpu_memory (chart: backend.accelerators.{name}."
            "gpuMemory): the fit is not checked",
        )
    try:
        ram = parse_bytes(spec.resources.memory) if spec.resources.memory is not None else None
    except ValueError as error:
        return _unplanned(spec, f"resources.memory {error}")
    try:
        assert spec.model is not None  # a source came from it
        header = await headers.read(source, spec.model.sha256, {v.name: v.value for v in spec.env})
    except (HeaderError, OSError) as error:
        return _unplanned(spec, f"{error}; read again at the next reconcile", HEADER_UNREADABLE)
    return planned(spec, header, gpu_memory, ram)


def planned(spec: LocalModelSpec, header: GGUFHeader, gpu_memory: int | None, ram: int | None) -> FitCheck:
    """The plan of `spec` for this header: each GPU has `gpu_memory` bytes, RAM `ram` (None: unchecked)."""
    inputs = plan_input(
        spec,
        header.model_file_bytes,
        threads=cpu_count(spec.resources.cpu),
        gpu_memory_bytes=gpu_memory,
        ram_bytes=ram,
    )
    try:
        plan = plan_fit(header, inputs)
    except FitError as error:
        return _unplanned(spec, f"the fit is not checked: {error}")
    message = "; ".join([plan.reason, *plan.warnings])
    if not plan.fits:
        return FitCheck("False", DOES_NOT_FIT, message, plan)
    return FitCheck("True", FITS, message, plan)


def served_spec(spec: LocalModelSpec, fit: FitCheck | None) -> LocalModelSpec:
    """The spec the backend runs: `gpuLayers: auto` replaced by the plan's count, or without a plan by
    the default (unset: all layers with GPUs), since the backend takes only a number."""
    return with_gpu_layers(spec, fit.plan.gpu_layers if fit is not None and fit.plan is not None else None)


def cpu_count(quantity: str | None) -> int:
    """The CPUs a CPU quantity gives, rounded up (`500m` → 1, `2` → 2); 1 when unset."""
    if quantity is None:
        return 1
    if quantity.endswith("m"):
        return max(1, math.ceil(float(quantity[:-1]) / 1000))
    try:
        return max(1, math.ceil(float(quantity)))
    except ValueError:
        return max(1, parse_bytes(quantity))  # `2k`: valid, if odd, for CPUs


def _unplanned(spec: LocalModelSpec, why: str, reason: str = NOT_PLANNED) -> FitCheck:
    if spec.backend.engine.gpu_layers == "auto" and spec.resources.gpu is not None:
        why += "; gpuLayers auto offloads every layer, as without it"
    return FitCheck("Unknown", reason, why)
