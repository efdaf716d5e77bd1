"""Local mode shares the CPUs out among the backend processes it runs at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localmodel.local.runtime import LocalServedModel, threads_per_backend
from localmodel.spec import LocalModel


def served(name: str, path: Path | None = Path("/m.gguf"), **spec: Any) -> LocalServedModel:
    model = LocalModel.model_validate(
        {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": name},
            "spec": {"model": {"url": "file:///m.gguf"}, **spec},
        }
    )
    return LocalServedModel(model, path)


def test_one_backend_takes_every_cpu() -> None:
    assert threads_per_backend([served("a")], cpus=8) is None


def test_backends_split_the_cpus_and_never_go_below_one_thread() -> None:
    assert threads_per_backend([served("a"), served("b")], cpus=8) == 4
    assert threads_per_backend([served("a", replicas=3)], cpus=8) == 2
    assert threads_per_backend([served("a"), served("b"), served("c")], cpus=2) == 1


def test_external_backends_and_scale_to_zero_models_are_counted_as_they_run() -> None:
    external = served("x", path=None, backend={"address": "10.0.0.1:50051"})
    assert threads_per_backend([served("a"), external], cpus=8) is None
    # A model that starts at zero still runs a replica once woken.
    assert threads_per_backend([served("a"), served("b", minReplicas=0)], cpus=8) == 4
