"""One model's backend processes in local mode: its replicas, its routes, and scale to and from zero."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from localmodel.command import BackendCommand, backend_command, with_gpu_layers
from localmodel.local.supervisor import BackendSupervisor
from localmodel.spec import LocalModel, LocalModelSpec
from localmodel_router.discovery.local import LocalDiscovery
from localmodel_router.load import ModelLoad

log = logging.getLogger(__name__)

IDLE_CHECK_SECONDS = 1.0


def without_auto_layers(spec: LocalModelSpec) -> LocalModelSpec:
    """`gpuLayers: auto` as local mode can decide it: it knows no GPU's memory, so every layer goes to the
    GPUs a spec asks for (llama.cpp says so at load if they do not fit), none without GPUs."""
    if spec.backend.engine.gpu_layers != "auto":
        return spec
    layers = -1 if spec.resources.gpu is not None else 0
    log.info(
        "gpuLayers auto: %d in local mode (%s)", layers, "all, on the GPUs asked for" if layers else "no GPUs"
    )
    return with_gpu_layers(spec, layers)


class ModelGroup:
    """Starts and stops a model's replicas and tells the router which are ready. A model with
    minReplicas 0 wakes on its first request and goes back to zero after `scaleDownDelaySeconds` idle."""

    def __init__(
        self,
        model: LocalModel,
        model_path: Path,
        discovery: LocalDiscovery,
        load: ModelLoad,
        startup_timeout: float,
        grace: float,
        threads: int | None = None,
    ) -> None:
        self.name = model.served_name
        self._spec = without_auto_layers(model.spec)
        self._model_path = model_path
        self._discovery = discovery
        self._load = load
        self._startup_timeout = startup_timeout
        self._grace = grace
        self._threads = threads  # for a spec that sets none: this model's share of the machine's CPUs
        self._replicas: list[BackendSupervisor] = []
        self._leaving: set[BackendSupervisor] = set()  # removed from routing, still being stopped
        self._started = 0  # replicas ever started, to label each one
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def replicas(self) -> list[BackendSupervisor]:
        return list(self._replicas)

    async def start(self) -> None:
        """Start the initial replicas and wait until each is ready (BackendStartError if one cannot be)."""
        self._add_replicas(self._spec.initial_replicas, give_up_if_first_start_fails=True)
        self._publish()
        await asyncio.gather(*(replica.first_ready for replica in self._replicas))
        if self._spec.min_replicas == 0:
            self._spawn(self._scale_to_zero_when_idle())

    def wake(self) -> None:
        """A request found no replica: start some (the router holds the request until one is ready)."""
        if self._replicas or self._stopping:
            return
        count = max(1, self._spec.replicas or 0)
        log.info("%s: woken by a request; starting %d replica(s)", self.name, count)
        self._add_replicas(count, give_up_if_first_start_fails=False)
        self._publish()

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._remove_all_replicas()
        # A scale-down cancelled above may have left replicas mid-stop: finish stopping them.
        await asyncio.gather(*(replica.stop(self._grace) for replica in list(self._leaving)))

    def _command_for(self, address: str) -> BackendCommand:
        # The backend finishes its requests a little before local mode would kill it.
        return backend_command(
            self._spec,
            str(self._model_path),
            address,
            grace_period=max(1.0, self._grace - 2),
            default_threads=self._threads,
        )

    def _add_replicas(self, count: int, give_up_if_first_start_fails: bool) -> None:
        for _ in range(count):
            self._started += 1
            replica = BackendSupervisor(
                f"{self.name}/{self._started}", self._command_for, self._publish, self._startup_timeout
            )
            self._replicas.append(replica)
            replica.start(give_up_if_first_start_fails)

    async def _remove_all_replicas(self) -> None:
        leaving, self._replicas = self._replicas, []
        self._leaving.update(leaving)
        self._publish()  # out of the routing table first, then drained and stopped
        await asyncio.gather(*(replica.stop(self._grace) for replica in leaving))
        self._leaving.difference_update(leaving)

    def _publish(self) -> None:
        ready = [replica.address for replica in self._replicas if replica.address is not None]
        crashed = None if ready else self._crashed()
        ended = crashed.last_exit if crashed else None
        self._discovery.set_endpoints(
            self.name,
            ready,
            starting=len(ready) < len(self._replicas),
            failure=ended.describe("its backend process", output=False) if ended else None,
            failure_output=ended.log_tail if ended else (),
            failing_to_start=crashed.died_starting if crashed else False,
        )

    def _crashed(self) -> BackendSupervisor | None:
        """A replica whose last process failed, when none is ready: the router puts why into its errors
        and /readyz."""
        for replica in self._replicas:
            ended = replica.last_exit
            if ended is not None and (ended.signal or ended.code):
                return replica
        return None

    async def _scale_to_zero_when_idle(self) -> None:
        delay = self._spec.scale_down_delay_seconds
        while True:
            await asyncio.sleep(IDLE_CHECK_SECONDS)
            if self._replicas and self._load.idle_seconds(self.name) >= delay:
                log.info("%s: idle for %ds; scaling to zero", self.name, delay)
                await self._remove_all_replicas()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
