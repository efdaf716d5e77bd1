"""Every Prometheus metric the router exports, named in one place.

`model` labels carry served names only (never what a client typed), so label cardinality stays bounded.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UNKNOWN_MODEL = "_unknown"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter(
    "localmodel_router_requests_total", "HTTP requests answered", ["model", "endpoint", "status"]
)
REQUEST_SECONDS = Histogram(
    "localmodel_router_request_duration_seconds",
    "Time from request to the end of the response (streams included)",
    ["model", "endpoint"],
    buckets=_LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN_SECONDS = Histogram(
    "localmodel_router_time_to_first_token_seconds",
    "Time from request to the first generated text",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
PROMPT_TOKENS = Counter("localmodel_router_prompt_tokens_total", "Prompt tokens processed", ["model"])
GENERATED_TOKENS = Counter("localmodel_router_generated_tokens_total", "Tokens generated", ["model"])
IN_FLIGHT = Gauge(
    "localmodel_router_in_flight_requests", "Requests sent to backends, not yet done", ["model"]
)
WAITING = Gauge(
    "localmodel_router_waiting_requests", "Requests waiting for a place at their model", ["model"]
)
BACKEND_ERRORS = Counter(
    "localmodel_router_backend_errors_total", "Failed backend calls by gRPC status", ["model", "code"]
)
RETRIES = Counter(
    "localmodel_router_retries_total",
    "Requests moved to another replica after a connection failure",
    ["model"],
)
LOST_DURING_REQUEST = Counter(
    "localmodel_router_backends_lost_during_request_total",
    "Requests whose backend went away while serving them (a crash, perhaps caused by the request); "
    "never replayed",
    ["model"],
)
HELD = Gauge(
    "localmodel_router_held_requests", "Requests waiting for a starting model's first backend", ["model"]
)
HELD_SECONDS = Histogram(
    "localmodel_router_held_seconds",
    "Time requests waited for a starting model's first backend",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
ENDPOINTS = Gauge("localmodel_router_endpoints", "Ready backend endpoints per model", ["model"])
SCALE_REQUESTS = Counter(
    "localmodel_router_scale_from_zero_total",
    "Replicas asked for because a request found its model scaled to zero",
    ["model"],
)
WATCH_RESTARTS = Counter(
    "localmodel_router_watch_restarts_total",
    "Kubernetes watches started again, by resource and cause (expired, error)",
    ["resource", "cause"],
)
