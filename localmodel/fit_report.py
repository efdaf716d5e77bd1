"""A LocalModel's fit plan, read and shown: what `localmodel plan` and local mode print.

Reads only the model file's header (from disk, or by range requests for https and hf sources), plans
with the spec's settings (fit_inputs.py), and renders the plan as a table or as JSON for scripts.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from localmodel.fit import FitPlan, PlanInput, plan_fit
from localmodel.fit_inputs import plan_input
from localmodel.gguf_header import read_header
from localmodel.manifests import Manifest
from localmodel.quantities import parse_bytes
from localmodel.sources import parse_source


@dataclass(frozen=True)
class Machine:
    """What the plan is checked against: None for what is not checked."""

    ram_bytes: int | None  # a spec's `resources.memory` is checked instead, unless `ram_given`
    threads: int
    gpus: int | None = None  # None: as many as the spec asks for
    gpu_memory_bytes: int | None = None
    ram_given: bool = False  # asked for (--memory): over the spec's own limit


@dataclass(frozen=True)
class NamedPlan:
    name: str
    plan: FitPlan

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.plan.as_json()}


def plan_manifest(manifest: Manifest, machine: Machine) -> NamedPlan:
    """The plan of one LocalModel (not one with an external backend: it loads nothing here)."""
    model = manifest.model
    assert model.spec.model is not None, "an external backend has no model file to plan"
    header = read_header(parse_source(model.spec.model.url, manifest.base_dir))
    limit = model.spec.resources.memory
    ram = parse_bytes(limit) if limit and not machine.ram_given else machine.ram_bytes
    inputs = plan_input(
        model.spec,
        header.model_file_bytes,
        threads=machine.threads,
        gpu_memory_bytes=machine.gpu_memory_bytes,
        ram_bytes=ram,
    )
    return NamedPlan(
        model.metadata.name, plan_fit(header, _on(inputs, machine, model.spec.backend.engine.gpu_layers))
    )


def _on(inputs: PlanInput, machine: Machine, spec_gpu_layers: object) -> PlanInput:
    """The spec's settings on `machine`'s GPUs, when they are given instead of the spec's."""
    if machine.gpus is None:
        return inputs
    layers = inputs.gpu_layers if spec_gpu_layers is not None else (-1 if machine.gpus else 0)
    return dataclasses.replace(inputs, gpus=machine.gpus, gpu_layers=layers)


def plans_table(plans: list[NamedPlan]) -> Table:
    """One row per model; the reasons, too long for a column, go in the caption."""
    table = Table(title="Fit plan", title_justify="left", caption_justify="left")
    for column in ("model", "fits", "weights", "KV cache", "compute", "total", "GPU layers"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for named in plans:
        plan = named.plan
        table.add_row(
            named.name,
            "[green]yes[/]" if plan.fits else "[red]no[/]",
            gib(plan.weights_bytes),
            gib(plan.kv_cache_bytes),
            gib(plan.compute_bytes),
            gib(plan.total_bytes),
            f"{plan.gpu_layers}/{plan.layers}",
        )
    table.caption = "\n".join(describe(named) for named in plans)
    return table


def describe(named: NamedPlan) -> str:
    """`name: reason; warnings`, as a line of a log or of the table's caption."""
    return f"{named.name}: " + "; ".join([named.plan.reason, *named.plan.warnings])


def gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def available_memory_bytes() -> int | None:
    """Memory this machine can give now (Linux MemAvailable), else its physical memory, else None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
