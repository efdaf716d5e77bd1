"""The operator's Prometheus metrics (served on `metrics_port` when set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MODEL_LOAD = Gauge(
    "localmodel_operator_model_load",
    "Requests at the routers per LocalModel, as last read by the autoscaler",
    ["namespace", "model"],
)
WANTED_REPLICAS = Gauge(
    "localmodel_operator_autoscaler_replicas",
    "Replicas the autoscaler wants for a LocalModel (before the scale-down delay)",
    ["namespace", "model"],
)
SCALE_EVENTS = Counter(
    "localmodel_operator_scale_events_total",
    "Replica changes made by the autoscaler",
    ["namespace", "model", "direction"],
)
