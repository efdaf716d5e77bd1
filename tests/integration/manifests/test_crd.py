"""The LocalModel CRD: generated from localmodel/spec.py, a valid CRD, and in agreement with the pydantic
types on real manifests (every example, and invalid ones)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from localmodel.manifests import ManifestError, parse_manifest
from scripts.generate_crd import CRD_PATH, render
from tests.support.kube_schemas import assert_valid, crd, schema_errors

EXAMPLES = Path(__file__).parents[3] / "examples"


def test_the_committed_crd_is_what_the_generator_makes() -> None:
    assert CRD_PATH.read_text() == render(), "stale CRD: run `python -m scripts.generate_crd`"


def test_it_is_a_valid_custom_resource_definition() -> None:
    definition = crd()
    assert_valid(definition)
    version = definition["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert definition["spec"]["names"]["shortNames"] == ["lm"]
    text = CRD_PATH.read_text()
    assert "$ref" not in text and "anyOf" not in text and "additionalProperties: false" not in text


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_passes_the_crd_schema_and_the_types(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        assert schema_errors(document) == []
        parse_manifest(document, str(path))


VALID = {
    "apiVersion": "localmodel.dev/v1alpha1",
    "kind": "LocalModel",
    "metadata": {"name": "m"},
    "spec": {"model": {"url": "hf://org/repo/m.gguf"}, "resources": {"gpu": {"count": 1}}},
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tasks": ["dance"]}, "spec.tasks.0"),
        ({"model": {"url": "ftp://x/m.gguf"}}, "spec.model.url"),
        ({"backend": {"engine": {"contextSize": 0}}}, "spec.backend.engine.contextSize"),
        ({"resources": {"gpu": {"vendor": "acme"}}}, "spec.resources.gpu.vendor"),
        ({"replicas": -1}, "spec.replicas"),
    ],
)
def test_schema_and_types_refuse_the_same_fields(change: dict[str, Any], field: str) -> None:
    document = copy.deepcopy(VALID)
    document["spec"].update(change)
    errors = schema_errors(document)
    assert errors and all(error.startswith(field) for error in errors), errors
    with pytest.raises(ManifestError, match=field.replace(".0", r"\[0\]").replace(".", r"\.")):
        parse_manifest(document, "m.yaml")


def test_cross_field_rules_are_cel_rules_in_the_crd() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = [rule["message"] for rule in spec["x-kubernetes-validations"]]
    assert "minReplicas must not exceed maxReplicas" in messages
    assert (
        spec["properties"]["backend"]["x-kubernetes-validations"][0]["rule"]
        == "!(has(self.image) && has(self.address))"
    )


def test_gpu_layers_are_int_or_string_with_a_rule_and_plan_figures_int64() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    engine = schema["spec"]["properties"]["backend"]["properties"]["engine"]["properties"]
    layers = engine["gpuLayers"]
    assert layers["x-kubernetes-int-or-string"] is True and "type" not in layers
    assert layers["x-kubernetes-validations"][0]["rule"] == "type(self) == int ? self >= -1 : self == 'auto'"
    for value in (-1, 40, "auto"):  # accepted by the schema and by the types
        document = copy.deepcopy(VALID)
        document["spec"]["backend"] = {"engine": {"gpuLayers": value}}
        assert schema_errors(document) == []
        parse_manifest(document, "m.yaml")
    plan = schema["status"]["properties"]["plan"]["properties"]
    for figure in ("weightsBytes", "kvCacheBytes", "computeBytes", "totalBytes"):
        assert (plan[figure]["type"], plan[figure]["format"]) == ("integer", "int64")
    assert plan["devices"]["items"]["properties"]["capacityBytes"]["format"] == "int64"
    conditions = schema["status"]["properties"]["conditions"]["items"]["properties"]["type"]["enum"]
    assert "Fits" in conditions
