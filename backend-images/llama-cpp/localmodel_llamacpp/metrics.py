"""The backend's Prometheus metrics, read from the scheduler at scrape time (`--metrics-port`).

Names follow the Gateway API inference extension's model-server protocol, which endpoint pickers read
to route by queue, load and KV-cache use: our own names, and the vLLM names the protocol's default
configuration looks for, so a picker needs no per-backend settings.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from localmodel_llamacpp.batching import BatchingScheduler

# (our name, vLLM's name, help): queue size, running requests, KV-cache utilisation (0..1).
_GAUGES = (
    ("localmodel_backend_requests_waiting", "vllm:num_requests_waiting", "Requests waiting for a slot"),
    ("localmodel_backend_requests_running", "vllm:num_requests_running", "Requests being decoded"),
    (
        "localmodel_backend_kv_cache_usage_ratio",
        "vllm:kv_cache_usage_perc",
        "KV cells held by running requests, 0 to 1",
    ),
)


class SchedulerCollector(Collector):
    def __init__(self, scheduler: BatchingScheduler) -> None:
        self._scheduler = scheduler

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        scheduler = self._scheduler
        values = (scheduler.waiting, scheduler.running, scheduler.kv_usage())
        for (name, vllm_name, documentation), value in zip(_GAUGES, values, strict=True):
            for metric_name in (name, vllm_name):
                yield GaugeMetricFamily(metric_name, documentation, value=value)
        slots = GaugeMetricFamily(
            "localmodel_backend_slot_tokens_per_second",
            "Tokens/s of each slot's latest generation",
            labels=["slot"],
        )
        for index, speed in enumerate(scheduler.slot_speeds()):
            slots.add_metric([str(index)], speed)
        yield slots
        yield GaugeMetricFamily(
            "localmodel_backend_slots", "Sequences decoded together", value=scheduler.slots
        )
        yield GaugeMetricFamily(
            "localmodel_backend_lanes", "Decode lanes the slots are spread over", value=len(scheduler.lanes)
        )
        # vLLM's name too: dashboards read its prefill rate from it.
        for name in ("localmodel_backend_prompt_tokens", "vllm:prompt_tokens"):
            yield CounterMetricFamily(
                name,
                "Prompt tokens prefilled (a reused prefix and a prompt copied to further answers are not)",
                value=scheduler.prompt_tokens_decoded,
            )
        yield CounterMetricFamily(
            "localmodel_backend_prompts_restored",
            "Prompts restored from host memory into a slot instead of decoded again (--prompt-cache-ram)",
            value=scheduler.prompts_restored,
        )


def serve_metrics(scheduler: BatchingScheduler, port: int) -> None:
    REGISTRY.register(SchedulerCollector(scheduler))
    start_http_server(port)
