"""Local mode's check before it starts anything: will every model, with its replicas, fit in this
machine's memory? Planned from the fetched files' headers (localmodel/fit.py); printed at start.

Replicas of a model map the same file, so its weights count once (the page cache holds them once);
each replica has its own KV cache, compute buffers and process.
"""

from __future__ import annotations

import logging

from localmodel.backend_types import BackendType
from localmodel.fit import FitError, plan_fit
from localmodel.fit_inputs import plan_input
from localmodel.fit_report import NamedPlan, available_memory_bytes, describe, gib
from localmodel.gguf_header import HeaderError, read_local_header
from localmodel.local.runtime import LocalServedModel, backend_processes

log = logging.getLogger(__name__)


class DoesNotFitError(ValueError):
    """The models would not fit this machine's memory; the message has the figures."""


def preflight(models: list[LocalServedModel], threads: int) -> None:
    """Plan every model against the memory available now, log each plan, and raise DoesNotFitError
    when they would not fit. A model the planner cannot count is logged and left to try."""
    ram = available_memory_bytes()
    plans = []
    for served in models:
        if served.path is not None and served.model.spec.backend.type is not BackendType.LLAMA_CPP:
            log.info(
                "%s: not planned (the fit plan reads GGUF files; a %s model is not one)",
                served.model.served_name,
                served.model.spec.backend.type,
            )
            continue
        try:
            planned = plan_models([served], threads, ram)
        except (FitError, HeaderError) as error:
            log.warning(
                "%s: not planned (%s); starting it without a memory check", served.model.served_name, error
            )
            continue
        for named in planned:
            log.info("fit plan: %s", describe(named))
        plans += planned
    check_fit(models, plans, ram)


def plan_models(models: list[LocalServedModel], threads: int, ram_bytes: int | None) -> list[NamedPlan]:
    """The plan of each model that runs here (not external backends); FitError for one it cannot plan."""
    plans = []
    for served in models:
        if served.path is None:
            continue
        header = read_local_header(served.path)
        inputs = plan_input(served.model.spec, header.model_file_bytes, threads=threads, ram_bytes=ram_bytes)
        plans.append(NamedPlan(served.model.served_name, plan_fit(header, inputs)))
    return plans


def check_fit(models: list[LocalServedModel], plans: list[NamedPlan], ram_bytes: int | None) -> None:
    """DoesNotFitError when one model alone, or all of them with their replicas, need more than
    `ram_bytes` (None: nothing is checked)."""
    if ram_bytes is None:
        return
    for named in plans:
        if not named.plan.fits:
            raise DoesNotFitError(f"{named.name} does not fit this machine: {named.plan.reason}")
    replicas = {served.model.served_name: backend_processes(served) for served in models}
    total = sum(
        plan.weights_bytes + replicas[name] * (plan.total_bytes - plan.weights_bytes)
        for name, plan in ((named.name, named.plan) for named in plans)
    )
    if total > ram_bytes:
        each = ", ".join(
            f"{named.name} {gib(named.plan.total_bytes)} × {replicas[named.name]}" for named in plans
        )
        raise DoesNotFitError(
            f"the models together need {gib(total)} and this machine has {gib(ram_bytes)} available "
            f"({each}; replicas share their weights)"
        )
