"""Validate manifests against the official Kubernetes OpenAPI schemas (offline; strict: no unknown fields)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

KUBERNETES_VERSION = "1.37"


def assert_valid(manifest: dict[str, Any]) -> None:
    """Fail the test naming the object and the problem; an unknown kind fails too (the tool only warns)."""
    name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(part) for part in error.path)
        pytest.fail(
            f"{name} is not a valid Kubernetes {KUBERNETES_VERSION} object: {error.message} at {where}"
        )
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(f"{name}: no schema to validate against: {error}")
