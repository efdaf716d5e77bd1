"""Validate manifests against the official Kubernetes OpenAPI schemas (offline; strict: no unknown fields)."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scripts.generate_crd import CRD_PATH

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


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def json_schema(openapi: Any) -> Any:
    """OpenAPI's `nullable` as JSON schema's null type, so that jsonschema checks what the API server does."""
    if isinstance(openapi, list):
        return [json_schema(item) for item in openapi]
    if not isinstance(openapi, dict):
        return openapi
    converted = {key: json_schema(value) for key, value in openapi.items() if key != "nullable"}
    if openapi.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json_schema(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)]
