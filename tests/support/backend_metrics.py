"""One value from a backend's Prometheus metrics (`--metrics-port`), read with prometheus_client's own
parser: for tests and benchmarks that count what the backend did."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def backend_metric(port: int, sample: str) -> float:
    """The value of the unlabelled sample `sample` (a counter's name ends in `_total`)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and not found.labels:
                return float(found.value)
    raise AssertionError(f"{sample} is not among the backend's metrics on port {port}")
