"""The LocalModel CRD: generated from localmodel/spec.py, a valid CRD, and in agreement with the pydantic
types on real manifests (every example, and invalid ones): its schema as jsonschema checks it, its CEL
rules as cel-python (with RE2, as the API server) evaluates them, after the schema's defaults."""

from __future__ import annotations

import copy
import functools
import itertools
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from pydantic import ValidationError

from localmodel.backend_types import BACKENDS, BackendType
from localmodel.manifests import ManifestError, parse_manifest
from localmodel.sources import names_directory
from localmodel.spec import LocalModel, gpu_not_served_message, tasks_not_served_message
from scripts.generate_crd import CRD_PATH, engine_rules, render
from scripts.generate_crd import names_directory as names_directory_rule
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


@functools.cache
def _program(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def holds(rule: str, value: Any) -> bool:
    """Whether a CEL rule holds for `value` as `self` (an evaluation error fails it, as on the API server)."""
    return _holds(rule, {"self": celpy.json_to_cel(value)})


def _holds(rule: str, activation: dict[str, Any]) -> bool:
    try:
        result = _program(rule).evaluate(activation)
    except celpy.CELEvalError:
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


@functools.cache
def _root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults where it leaves fields out, as the API server fills them in
    before it runs the rules."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        filled = {name: copy.deepcopy(p["default"]) for name, p in properties.items() if "default" in p}
        filled.update(value)
        return {
            name: with_defaults(properties[name], item) if name in properties else item
            for name, item in filled.items()
        }
    if isinstance(value, list) and "items" in schema:
        return [with_defaults(schema["items"], item) for item in value]
    return value


def cel_failures(document: dict[str, Any]) -> list[str]:
    """The messages of every CEL rule of the CRD that `document` breaks."""
    schema = _root_schema()
    return _failures(schema, with_defaults(schema, document))


def _failures(schema: dict[str, Any], value: Any) -> list[str]:
    rules = schema.get("x-kubernetes-validations", [])
    activation = {"self": celpy.json_to_cel(value)} if rules else {}
    failed = [rule["message"] for rule in rules if not _holds(rule["rule"], activation)]
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if value.get(name) is not None:
                failed += _failures(child, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            failed += _failures(schema["items"], item)
    return failed


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_passes_the_crd_schema_its_rules_and_the_types(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        assert schema_errors(document) == []
        assert cel_failures(document) == []
        parse_manifest(document, str(path))


def test_the_examples_run_every_engine() -> None:
    engines = {
        document["spec"].get("backend", {}).get("type", "llama-cpp")
        for path in EXAMPLES.glob("*.yaml")
        for document in yaml.safe_load_all(path.read_text())
    }
    assert engines == set(BackendType)


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


def local_model(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "m"},
        "spec": spec,
    }


def types_error(document: dict[str, Any]) -> str | None:
    """The pydantic types' message for a manifest (None: accepted)."""
    try:
        LocalModel.model_validate(document)
    except ValidationError as error:
        return str(error.errors()[0]["ctx"]["error"])
    return None


WHISPER = {"model": {"url": "hf://Systran/faster-whisper-tiny.en"}, "backend": {"type": "faster-whisper"}}
PIPER_DIRECTORY = {"model": {"url": "file:///voices/joe/"}, "backend": {"type": "piper"}}
GGUF = {"model": {"url": "hf://org/repo/m.gguf"}}
FILE_ONLY = (
    "backend type llama-cpp serves one model file: model.url names a directory (a URL ending in /, or "
    "hf://ORG/REPO without a file)"
)
DIRECTORY_ONLY = (
    "backend type faster-whisper loads a model directory: end model.url with / (file:///models/name/, "
    "pvc://claim/name/) or name only the repository (hf://ORG/REPO)"
)
NO_SHA256 = "model.sha256 checks one file: a directory source takes none"


def whisper(**change: Any) -> dict[str, Any]:
    return {**WHISPER, **change, "backend": {**WHISPER["backend"], **change.get("backend", {})}}


def piper(**change: Any) -> dict[str, Any]:
    return {
        **PIPER_DIRECTORY,
        **change,
        "backend": {**PIPER_DIRECTORY["backend"], **change.get("backend", {})},
    }


def llama_option(option: str, backend_type: str) -> str:
    return (
        f"backend.engine.{option} is a llama-cpp option: backend type {backend_type} takes threads, "
        "parallel, options and args"
    )


# (spec, what the CEL rules say of it: nothing for a spec they accept), each as the types judge it.
ENGINE_CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "whisper": (WHISPER, []),
    "whisper-on-nvidia": (whisper(resources={"gpu": {"count": 1}}), []),
    "whisper-at-a-revision": (whisper(model={"url": "hf://Systran/faster-whisper-tiny.en@v1/"}), []),
    "whisper-shared-options": (
        whisper(backend={"engine": {"threads": 2, "parallel": 2, "args": ["-v"]}}),
        [],
    ),
    "whisper-image-reranks-too": (whisper(tasks=["transcription", "rerank"], backend={"image": "x/y:1"}), []),
    "piper-directory": (PIPER_DIRECTORY, []),
    "piper-one-file": (piper(model={"url": "https://voices.example/en_US-joe-medium.onnx"}), []),
    "piper-nvidia-with-its-own-image": (
        piper(resources={"gpu": {}}, backend={"image": "x/piper-cuda:1"}),
        [],
    ),
    "piper-external-chats": (piper(tasks=["chat"], backend={"address": "tts.example:50051"}), []),
    "llama-with-sha256": ({"model": {"url": "hf://org/repo/m.gguf", "sha256": "a" * 64}}, []),
    "piper-chat": (piper(tasks=["chat"]), [tasks_not_served_message(BackendType.PIPER, ["chat"])]),
    "llama-transcription": (
        {**GGUF, "tasks": ["transcription"]},
        [tasks_not_served_message(BackendType.LLAMA_CPP, ["transcription"])],
    ),
    "whisper-speech-and-chat": (
        whisper(tasks=["speech", "chat"]),
        [tasks_not_served_message(BackendType.FASTER_WHISPER, [task]) for task in ("chat", "speech")],
    ),
    "whisper-one-file": (
        whisper(model={"url": "hf://Systran/faster-whisper-tiny.en/model.bin"}),
        [DIRECTORY_ONLY],
    ),
    "whisper-over-https": (whisper(model={"url": "https://models.example/whisper"}), [DIRECTORY_ONLY]),
    "llama-whole-repository": ({"model": {"url": "hf://org/repo"}}, [FILE_ONLY]),
    "llama-claim-directory": ({"model": {"url": "pvc://models/llama/"}}, [FILE_ONLY]),
    "llama-directory-sha256": ({"model": {"url": "file:///m/", "sha256": "a" * 64}}, [FILE_ONLY, NO_SHA256]),
    "piper-directory-sha256": (piper(model={"url": "file:///voices/joe/", "sha256": "a" * 64}), [NO_SHA256]),
    "piper-on-a-gpu": (
        piper(resources={"gpu": {"count": 1}}),
        [gpu_not_served_message(BackendType.PIPER, "nvidia")],
    ),
    "whisper-on-amd": (
        whisper(resources={"gpu": {"vendor": "amd"}}),
        [gpu_not_served_message(BackendType.FASTER_WHISPER, "amd")],
    ),
    "whisper-context-size": (
        whisper(backend={"engine": {"contextSize": 448}}),
        [llama_option("contextSize", "faster-whisper")],
    ),
    "piper-gpu-layers-and-repack": (
        piper(backend={"engine": {"gpuLayers": "auto", "repack": "off"}}),
        [llama_option("gpuLayers", "piper"), llama_option("repack", "piper")],
    ),
}


@pytest.mark.parametrize(("spec", "messages"), ENGINE_CASES.values(), ids=ENGINE_CASES.keys())
def test_the_rules_of_what_an_engine_serves_say_what_the_types_say(
    spec: dict[str, Any], messages: list[str]
) -> None:
    document = local_model(spec)
    assert schema_errors(document) == []
    assert sorted(cel_failures(document)) == sorted(messages)
    refused = types_error(document)
    if not messages:
        assert refused is None
        return
    assert refused is not None
    url = spec["model"]["url"]
    # The types name the URL; a CEL message cannot (it is static). Several tasks: one rule for each.
    said = refused.replace(f"model.url {url} ", "model.url ")
    unserved = [task for task in spec.get("tasks", []) if f"does not serve {task}" in " ".join(messages)]
    assert said in messages or said == tasks_not_served_message(
        BackendType(spec["backend"]["type"]), unserved
    )


def test_the_engine_rules_come_from_the_table() -> None:
    rules = engine_rules()
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert all(rule in spec["x-kubernetes-validations"] for rule in rules)
    for kind in BACKENDS.values():
        named = [rule for rule in rules if f"== '{kind.type}' &&" in rule["rule"]]
        refused_tasks = {rule["message"] for rule in named if rule["fieldPath"] == ".tasks"}
        assert len(refused_tasks) == len(
            {"chat", "completion", "embedding", "transcription", "speech"} - kind.tasks
        )
        vendors = {rule["message"] for rule in named if rule["fieldPath"] == ".resources.gpu.vendor"}
        assert len(vendors) == len({"nvidia", "amd", "intel"} - kind.accelerators)


URLS = [
    "hf://org/repo",
    "hf://org/repo/",
    "hf://org/repo@v1.0",
    "hf://org/repo@v1.0/",
    "hf://org/repo/m.gguf",
    "hf://org/repo@main/en/en_US/joe/medium/en_US-joe-medium.onnx",
    "hf://org//repo",
    "hf://org/repo?download=1",
    "hf://org/repo/dir/",
    "hf:org/repo",
    "hf:org",
    "file:///models/whisper/",
    "file:///models/m.gguf",
    "file:relative/dir/",
    "pvc://claim/dir/",
    "pvc://claim/m.gguf",
    "https://host/path/",
    "https://host/m.gguf",
]


@pytest.mark.parametrize("url", URLS)
def test_the_rules_tell_a_directory_as_the_sources_do(url: str) -> None:
    assert holds(names_directory_rule("self"), url) == names_directory(url)


def test_every_combination_gets_the_same_verdict_from_the_rules_and_the_types() -> None:
    """Each engine with each shape of source (a file, a directory, with a sha256 or not), each kind of
    task, and GPUs of a vendor it has images for or not, or with an image of the model's own."""
    models = [
        {"url": "hf://org/repo/m.gguf"},
        {"url": "https://host/voice.onnx", "sha256": "b" * 64},
        {"url": "hf://org/repo"},
        {"url": "pvc://claim/dir/", "sha256": "b" * 64},
    ]
    tasks: list[list[str] | None] = [None, ["chat", "embedding"], ["transcription"], ["speech"]]
    gpus: list[tuple[dict[str, Any] | None, str | None]] = [
        (None, None),
        ({"count": 1}, None),
        ({"vendor": "amd"}, None),
        ({"count": 1}, "x/y:1"),
    ]
    disagreements, refused = [], 0
    for backend_type, model, task_list, (gpu, image) in itertools.product(BackendType, models, tasks, gpus):
        spec: dict[str, Any] = {"model": model, "backend": {"type": backend_type.value}}
        if task_list is not None:
            spec["tasks"] = task_list
        if gpu is not None:
            spec["resources"] = {"gpu": gpu}
        if image is not None:
            spec["backend"]["image"] = image
        document = local_model(spec)
        failures = cel_failures(document)
        refused += bool(failures)
        if bool(failures) != (types_error(document) is not None):
            disagreements.append(spec)
    assert disagreements == []
    assert 0 < refused < len(BackendType) * len(models) * len(tasks) * len(gpus)  # both verdicts occur
