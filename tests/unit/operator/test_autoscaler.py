from __future__ import annotations

from typing import Any

import pytest

from localmodel.spec import LocalModelSpec
from localmodel_operator.autoscaler import LoadWindow, ModelAutoscaler, Policy

URL = {"model": {"url": "https://models.example/m.gguf"}}


def spec(**fields: Any) -> LocalModelSpec:
    return LocalModelSpec.model_validate({**URL, **fields})


def policy(**fields: Any) -> Policy:
    scaled = Policy.of(spec(**fields))
    assert scaled is not None
    return scaled


@pytest.mark.parametrize(
    ("fields", "scaled"),
    [
        ({}, False),  # one replica, no range to scale in
        ({"minReplicas": 2, "maxReplicas": 2}, False),
        ({"minReplicas": 1, "maxReplicas": 3}, True),
        ({"minReplicas": 0}, True),  # scale to zero and back to one
        ({"minReplicas": 0, "maxReplicas": 4, "autoscaling": {"enabled": False}}, False),  # an HPA's
        ({"backend": {"address": "10.0.0.1:50051"}, "minReplicas": 0}, False),  # nothing of ours runs
    ],
)
def test_only_models_with_a_range_and_our_backend_are_scaled(fields: dict[str, Any], scaled: bool) -> None:
    assert (Policy.of(spec(**fields)) is not None) is scaled


def test_replicas_are_load_over_target_rounded_up_and_clamped() -> None:
    scaled = policy(minReplicas=1, maxReplicas=4, autoscaling={"targetRequests": 2})
    assert [scaled.replicas_for(load) for load in (0, 0.5, 2, 2.1, 7, 100)] == [1, 1, 1, 2, 4, 4]
    # The target defaults to the slots one replica decodes at once.
    assert policy(minReplicas=0, maxReplicas=4, backend={"engine": {"parallel": 4}}).target == 4
    assert policy(minReplicas=0).maximum == 1


def test_the_window_averages_only_recent_samples() -> None:
    window = LoadWindow(seconds=10)
    for now, load in [(0, 8), (5, 4), (9, 0)]:
        window.add(now, load)
    assert window.average() == 4
    window.add(12, 2)  # the sample at 0 is older than 10 s now
    assert window.average() == 2
    assert LoadWindow(seconds=1).average() == 0


def test_up_at_once_down_only_after_the_delay() -> None:
    scaled = policy(
        minReplicas=0,
        maxReplicas=3,
        scaleDownDelaySeconds=30,
        autoscaling={"targetRequests": 1, "windowSeconds": 1},
    )
    scaler = ModelAutoscaler()
    assert scaler.decide(scaled, now=0, load=3, current=0) == 3  # a burst: all replicas now
    assert scaler.decide(scaled, now=1, load=3, current=3) is None
    assert scaler.decide(scaled, now=2, load=1, current=3) is None  # lower, but not for long yet
    assert scaler.decide(scaled, now=20, load=1, current=3) is None
    assert scaler.decide(scaled, now=25, load=3, current=3) is None  # back up: the delay starts over
    assert scaler.decide(scaled, now=26, load=1, current=3) is None
    assert scaler.decide(scaled, now=56, load=1, current=3) == 1  # lower for 30 s
    assert scaler.decide(scaled, now=57, load=0, current=1) is None
    assert scaler.decide(scaled, now=87, load=0, current=1) == 0  # idle: to zero


def test_a_changed_window_starts_a_fresh_average() -> None:
    scaler = ModelAutoscaler()
    wide = policy(minReplicas=0, maxReplicas=4, autoscaling={"targetRequests": 1, "windowSeconds": 60})
    assert scaler.decide(wide, now=0, load=4, current=0) == 4
    narrow = policy(minReplicas=0, maxReplicas=4, autoscaling={"targetRequests": 1, "windowSeconds": 5})
    # The old window's samples (load 4) are not averaged in: 2 replicas are asked at once.
    assert scaler.decide(narrow, now=1, load=2, current=0) == 2


def test_a_burst_after_quiet_is_met_at_once_not_averaged_away() -> None:
    scaled = policy(minReplicas=0, maxReplicas=4, autoscaling={"targetRequests": 1, "windowSeconds": 60})
    scaler = ModelAutoscaler()
    for now in range(10):
        assert scaler.decide(scaled, now=now, load=0, current=0) is None
    assert scaler.decide(scaled, now=10, load=4, current=0) == 4  # the window's average is 0.4
    assert scaler.wanted == 4
