"""Local mode's memory check: each model alone, then all of them with their replicas (weights once)."""

from __future__ import annotations

import pytest

from localmodel.local.fit_check import DoesNotFitError, check_fit, plan_models
from localmodel.local.runtime import LocalServedModel
from localmodel.spec import LocalModel
from tests.support.models import require_model


def served(replicas: int) -> LocalServedModel:
    path = require_model("smollm2")
    model = LocalModel.model_validate(
        {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": "smol"},
            "spec": {"model": {"url": path.as_uri()}, "replicas": replicas},
        }
    )
    return LocalServedModel(model, path)


def test_replicas_share_their_weights_and_nothing_else() -> None:
    models = [served(replicas=2)]
    (named,) = plan_models(models, threads=2, ram_bytes=None)
    weights, rest = named.plan.weights_bytes, named.plan.total_bytes - named.plan.weights_bytes
    check_fit(models, [named], ram_bytes=weights + 2 * rest)  # fits exactly
    with pytest.raises(
        DoesNotFitError, match=r"together need .* \(smol .* × 2; replicas share their weights\)"
    ):
        check_fit(models, [named], ram_bytes=weights + 2 * rest - 1)


def test_one_model_too_big_alone_is_named_with_the_planners_reason() -> None:
    models = [served(replicas=1)]
    plans = plan_models(models, threads=2, ram_bytes=64 << 20)
    with pytest.raises(
        DoesNotFitError, match="smol does not fit this machine: does not fit with every layer in RAM"
    ):
        check_fit(models, plans, ram_bytes=64 << 20)


def test_nothing_is_checked_without_a_memory_figure() -> None:
    models = [served(replicas=1)]
    check_fit(models, plan_models(models, threads=2, ram_bytes=None), ram_bytes=None)
