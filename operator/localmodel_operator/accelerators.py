"""Pure: which accelerator profile a LocalModel gets, and what it adds to the backend pod: the image of
its engine on that accelerator, device limits and where the pod may run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localmodel.spec import LocalModelSpec
from localmodel_operator.settings import AcceleratorProfile, OperatorSettings


class UnknownAcceleratorError(ValueError):
    """The spec asks for GPUs of a vendor the operator has no profile for, or no image of its engine."""


@dataclass(frozen=True)
class Placement:
    """What an accelerator adds to a pod: image, device limits and where the pod may run."""

    image: str
    limits: dict[str, str]
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    runtime_class_name: str | None


def profile_name(spec: LocalModelSpec) -> str:
    """The profile a spec gets: its GPUs' vendor, or `cpu`."""
    return spec.resources.gpu.vendor.value if spec.resources.gpu is not None else "cpu"


def profile_for(spec: LocalModelSpec, settings: OperatorSettings) -> AcceleratorProfile:
    name = profile_name(spec)
    profile: AcceleratorProfile | None = settings.accelerators.get(name)
    if profile is None:
        known = ", ".join(sorted(settings.accelerators))
        raise UnknownAcceleratorError(
            f"spec.resources.gpu.vendor {name!r}: no accelerator profile (known: {known})"
        )
    return profile


def placement(spec: LocalModelSpec, settings: OperatorSettings) -> Placement:
    """The profile for the spec's GPUs (or `cpu`), with the spec's own choices on top."""
    gpu = spec.resources.gpu
    profile = profile_for(spec, settings)
    limits = {profile.resource_name: str(gpu.count)} if gpu is not None and profile.resource_name else {}
    tolerations = list(profile.tolerations)
    tolerations += [
        toleration.model_dump(by_alias=True, exclude_none=True)
        for toleration in spec.tolerations
        if toleration.model_dump(by_alias=True, exclude_none=True) not in tolerations
    ]
    return Placement(
        image=spec.backend.image or _engine_image(spec, profile),
        limits=limits,
        node_selector={**profile.node_selector, **spec.node_selector},  # the model's own labels win
        tolerations=tolerations,
        runtime_class_name=profile.runtime_class_name,
    )


def _engine_image(spec: LocalModelSpec, profile: AcceleratorProfile) -> str:
    name = profile_name(spec)
    image = profile.image_for(spec.backend.type, name)
    if image is None:  # the spec refuses such GPUs without an image of the model's own: a safeguard
        raise UnknownAcceleratorError(
            f"backend type {spec.backend.type} has no image for the {name} accelerator profile; name one "
            "in spec.backend.image"
        )
    return image
