"""Replicas from load: the autoscaler's arithmetic, pure (the daemon in handlers.py feeds it).

Load is the requests a model has at the routers (held, waiting and running), sampled every few seconds.
Wanted replicas are load over `autoscaling.targetRequests`, rounded up and clamped to [minReplicas,
maxReplicas], where load is the larger of the latest sample and the average over
`autoscaling.windowSeconds`. So scaling up follows a burst at once (replicas take long to load a model;
they should not wait a window too), as an HPA's default scale-up does, while scaling down follows the
window's average and happens only once the lower figure held for `scaleDownDelaySeconds`, so a pause
between bursts does not throw replicas (and their loaded models) away. An idle model with minReplicas 0
thus reaches zero after window + delay.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from localmodel.spec import LocalModelSpec


@dataclass(frozen=True)
class Policy:
    minimum: int
    maximum: int
    target: int
    window_seconds: float
    scale_down_delay_seconds: float

    @classmethod
    def of(cls, spec: LocalModelSpec) -> Policy | None:
        """The spec's policy; None when the operator does not scale this model: autoscaling disabled
        (an HPA or KEDA drives it), or no range to scale in (no maxReplicas, minReplicas above 0)."""
        if not spec.autoscaling.enabled or spec.backend.address is not None:
            return None
        if spec.max_replicas is None and spec.min_replicas > 0:
            return None
        if spec.replica_ceiling == spec.min_replicas:
            return None
        return cls(
            minimum=spec.min_replicas,
            maximum=spec.replica_ceiling,
            target=spec.target_requests,
            window_seconds=spec.autoscaling.window_seconds,
            scale_down_delay_seconds=spec.scale_down_delay_seconds,
        )

    def replicas_for(self, load: float) -> int:
        return min(self.maximum, max(self.minimum, math.ceil(load / self.target)))


class LoadWindow:
    """Load samples of the last `seconds`, and their average; bounded by how often samples come."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, load: float) -> None:
        self._samples.append((now, load))
        while self._samples[0][0] <= now - self.seconds:
            self._samples.popleft()

    def average(self) -> float:
        return sum(load for _, load in self._samples) / len(self._samples) if self._samples else 0.0


class ModelAutoscaler:
    """One model's scaling state: its load window and how long a lower replica count has been wanted."""

    def __init__(self) -> None:
        self._window: LoadWindow | None = None
        self._lower_since: float | None = None
        self.wanted: int | None = None  # the last decision's figure, before the scale-down delay

    def decide(self, policy: Policy, now: float, load: float, current: int) -> int | None:
        """The replicas to set now, or None to leave `current` as it is."""
        if self._window is None or self._window.seconds != policy.window_seconds:
            self._window = LoadWindow(policy.window_seconds)
        self._window.add(now, load)
        self.wanted = wanted = policy.replicas_for(max(load, self._window.average()))
        if wanted > current:
            self._lower_since = None
            return wanted
        if wanted == current:
            self._lower_since = None
            return None
        if self._lower_since is None:
            self._lower_since = now
        if now - self._lower_since >= policy.scale_down_delay_seconds:
            self._lower_since = None
            return wanted
        return None
