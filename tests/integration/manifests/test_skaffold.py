"""skaffold.yaml, checked by what it references: nothing here ships skaffold (or a container runtime).

Each profile's JSON patches are applied as skaffold applies them; then every artifact must build from a
Dockerfile that exists (and a target stage it has), every value it sets must be a value of the chart,
every template variable must name an artifact it builds, and the chart, rendered by the real `helm` with
the images skaffold would hand it, must run those images. Every engine of localmodel/backend_types.py has
its CPU image built from `backend-images/<folder>/Dockerfile`, and under `-p nvidia` its CUDA one (where
it has one) from `Dockerfile.cuda`, each reaching the operator's settings as that engine's image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpointer
import pytest
import yaml

from localmodel.backend_types import BACKENDS, BackendKind, BackendType
from tests.support.chart import ROOT, helm

SKAFFOLD = ROOT / "skaffold.yaml"
VALUES = ROOT / "charts" / "localmodel" / "values.yaml"
# What a profile may hold besides its patches: the test applies patches only, as its model of skaffold.
PROFILE_KEYS = {"name", "activation", "patches"}
# Profile lists as `skaffold -p` takes them; patches apply in this order.
PROFILE_SETS = {
    "default": [],
    "cpu": ["cpu"],
    "nvidia": ["nvidia"],
    "dev": ["dev"],
    "dev,nvidia": ["dev", "nvidia"],
}
# Image → (Dockerfile, target stage): the operator and the router are two targets of one Dockerfile;
# each engine's images are named by the engine table, the CUDA ones `<repository>-cuda`.
IMAGES = {
    "localmodel/operator": ("Dockerfile", "operator"),
    "localmodel/router": ("Dockerfile", "router"),
} | {kind.image_repository: (f"backend-images/{kind.folder}/Dockerfile", None) for kind in BACKENDS.values()}
CUDA = {
    kind.image_repository + "-cuda": (f"backend-images/{kind.folder}/Dockerfile.cuda", None)
    for kind in BACKENDS.values()
    if kind.image_suffixes.get("nvidia") == "-cuda"
}
# The accelerator profiles skaffold builds backend images for, by the suffix of their artifacts' names.
BUILT_PROFILES = {"cpu": "", "nvidia": "-cuda"}
STAGE = re.compile(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)
# skaffold's per-artifact template variables (longest prefix first, so that REPO_NO_DOMAIN wins over REPO).
VARIABLE = re.compile(
    r"\{\{\s*\.IMAGE_(FULLY_QUALIFIED|REPO_NO_DOMAIN|REPO|TAG|DIGEST|DOMAIN)_([A-Za-z0-9_]+)\s*\}\}"
)
REGISTRY, TAG, DIGEST = "registry.test", "0f1e2d3c4b5a", "sha256:" + "e" * 64

profile_sets = pytest.mark.parametrize("profiles", PROFILE_SETS.values(), ids=PROFILE_SETS.keys())


def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SKAFFOLD.read_text())
    return loaded


def config(profiles: list[str]) -> dict[str, Any]:
    """The configuration with these profiles' patches applied; fails naming a patch that does not apply."""
    document = raw()
    by_name = {profile["name"]: profile for profile in document.pop("profiles", [])}
    for name in profiles:
        profile = by_name[name]
        assert set(profile) <= PROFILE_KEYS, f"profile {name}: only JSON patches are checked here"
        try:
            document = jsonpatch.apply_patch(document, profile.get("patches", []))
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
            pytest.fail(f"profile {name}: a patch does not apply: {error}")
    return document


def release(document: dict[str, Any]) -> dict[str, Any]:
    (only,) = document["deploy"]["helm"]["releases"]
    found: dict[str, Any] = only
    return found


def artifacts(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    listed = document["build"]["artifacts"]
    by_image = {artifact["image"]: artifact for artifact in listed}
    assert len(by_image) == len(listed), "two artifacts build the same image"
    return by_image


def template_name(image: str) -> str:
    """How skaffold's templates spell an artifact: `/`, `-` and `.` become `_`."""
    return re.sub(r"[/.-]", "_", image)


def built_reference(image: str) -> dict[str, str]:
    """Stand-ins for what skaffold knows of a built image, by template variable kind."""
    repo = f"{REGISTRY}/{image}"
    return {
        "REPO": repo,
        "TAG": TAG,
        "DIGEST": DIGEST,
        "DOMAIN": REGISTRY,
        "REPO_NO_DOMAIN": image,
        "FULLY_QUALIFIED": f"{repo}:{TAG}@{DIGEST}",
    }


def expand(template: str, document: dict[str, Any]) -> str:
    names = {template_name(image): image for image in artifacts(document)}

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.groups()
        assert name in names, f"{match.group()}: no artifact {name} (built: {sorted(names)})"
        return built_reference(names[name])[kind]

    expanded = VARIABLE.sub(substitute, template)
    assert "{{" not in expanded, f"{template!r}: only {{{{.IMAGE_<KIND>_<artifact>}}}} variables are checked"
    return expanded


def set_values(document: dict[str, Any]) -> dict[str, str]:
    """Every value the release sets (`setValues`, and `setValueTemplates` expanded), by dotted key."""
    chosen = release(document)
    values = {key: str(value) for key, value in chosen.get("setValues", {}).items()}
    values |= {key: expand(value, document) for key, value in chosen.get("setValueTemplates", {}).items()}
    return values


def nested(dotted: dict[str, str]) -> dict[str, Any]:
    """`{"a.b": v}` → `{"a": {"b": v}}`, as `helm --set-string` reads keys."""
    result: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


def chart_value(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted}: not a value of the chart ({VALUES})"
        node = node[part]
    return node


def test_it_is_a_skaffold_v4beta11_config_with_three_profiles() -> None:
    document = raw()
    assert (document["apiVersion"], document["kind"]) == ("skaffold/v4beta11", "Config")
    assert [profile["name"] for profile in document["profiles"]] == ["cpu", "nvidia", "dev"]
    assert not any("activation" in profile for profile in document["profiles"]), "profiles are chosen with -p"


@profile_sets
def test_every_profile_patch_applies_and_builds_the_images_it_should(profiles: list[str]) -> None:
    built = {
        image: (artifact["docker"]["dockerfile"], artifact["docker"].get("target"))
        for image, artifact in artifacts(config(profiles)).items()
    }
    assert built == IMAGES | (CUDA if "nvidia" in profiles else {})


@profile_sets
def test_every_artifact_builds_from_the_repository_root_with_a_dockerfile_there(profiles: list[str]) -> None:
    for image, artifact in artifacts(config(profiles)).items():
        context = ROOT / artifact.get("context", ".")
        assert context.resolve() == ROOT, (
            f"{image}: the Dockerfiles copy paths relative to the repository root"
        )
        dockerfile = context / artifact.get("docker", {}).get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{image}: no {dockerfile.relative_to(ROOT)}"
        target = artifact.get("docker", {}).get("target")
        stages = STAGE.findall(dockerfile.read_text())
        assert target is None or target in stages, f"{image}: {dockerfile.name} has no stage {target}"


def test_the_release_installs_the_chart_into_its_own_namespace() -> None:
    chosen = release(config([]))
    assert (chosen["name"], chosen["namespace"], chosen["createNamespace"]) == (
        "localmodel",
        "localmodel",
        True,
    )
    chart = ROOT / chosen["chartPath"]
    assert (chart / "Chart.yaml").is_file(), f"no chart at {chosen['chartPath']}"
    assert (chart / "values.yaml").resolve() == VALUES


@profile_sets
def test_every_value_set_is_a_value_of_the_chart(profiles: list[str]) -> None:
    values = yaml.safe_load(VALUES.read_text())
    for key, value in set_values(config(profiles)).items():
        default = chart_value(values, key)
        assert isinstance(default, str), f"{key}: the chart's value is {default!r}, not an image string"
        assert value, f"{key}: set to nothing"


@profile_sets
def test_templates_name_only_built_artifacts_and_every_artifact_is_used(profiles: list[str]) -> None:
    document = config(profiles)
    templates = release(document)["setValueTemplates"]
    used = {name for template in templates.values() for _, name in VARIABLE.findall(template)}
    assert used == {template_name(image) for image in artifacts(document)}
    for key, template in templates.items():
        kinds = {kind for kind, _ in VARIABLE.findall(template)}
        wanted = {"repository": {"REPO"}, "tag": {"TAG"}}.get(key.rsplit(".", 1)[-1], {"FULLY_QUALIFIED"})
        assert kinds == wanted, f"{key}: {template!r} should use IMAGE_{'/'.join(sorted(wanted))}"
    for component in ("operator", "router"):  # repository and tag of one and the same image
        parts = [templates[f"{component}.image.{part}"] for part in ("repository", "tag")]
        names = {name for part in parts for _, name in VARIABLE.findall(part)}
        assert names == {template_name(f"localmodel/{component}")}, component


@profile_sets
def test_the_chart_rendered_with_the_built_images_runs_them(profiles: list[str], tmp_path: Path) -> None:
    document = config(profiles)
    chosen = release(document)
    values = set_values(document)
    result = helm(
        "template",
        chosen["name"],
        str(ROOT / chosen["chartPath"]),
        "--namespace",
        chosen["namespace"],
        values=nested(values),
        folder=tmp_path,
    )
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    objects = [item for item in yaml.safe_load_all(result.stdout) if item]
    defaults = yaml.safe_load(VALUES.read_text())
    for component in ("operator", "router"):
        (deployment,) = [
            item
            for item in objects
            if item["kind"] == "Deployment"
            and item["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        reference = built_reference(f"localmodel/{component}")
        assert container["image"] == f"{reference['REPO']}:{reference['TAG']}"
        policy = values.get(f"{component}.image.pullPolicy", defaults[component]["image"]["pullPolicy"])
        assert container["imagePullPolicy"] == policy
        if "dev" in profiles:
            assert policy in ("IfNotPresent", "Never"), "dev: images are not pushed, so never pull them"
    (settings,) = [
        item
        for item in objects
        if item["kind"] == "ConfigMap"
        and item["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    (settings_file,) = settings["data"].values()
    accelerators = yaml.safe_load(settings_file)["accelerators"]
    built = artifacts(document)
    for kind in BACKENDS.values():
        for profile, suffix in BUILT_PROFILES.items():
            if profile not in kind.image_suffixes:
                continue  # the engine has no image for it (piper on GPUs)
            image = kind.image_repository + suffix
            expected = (
                built_reference(image)["FULLY_QUALIFIED"]
                if image in built
                else chart_image(defaults, kind, profile)
            )
            assert engine_image(accelerators[profile], kind) == expected, (kind.type, profile)


def chart_image(values: dict[str, Any], kind: BackendKind, profile: str) -> str:
    """The chart's own value for an engine's image on a profile."""
    images = values["backend"]["images"]
    image: str = images[profile] if kind.type is BackendType.LLAMA_CPP else images[kind.type.value][profile]
    return image


def engine_image(accelerator: dict[str, Any], kind: BackendKind) -> str:
    """An engine's image in one accelerator profile of the operator's settings: llama-cpp's is the
    profile's `image`, the other engines' are under `images`."""
    image: str = (
        accelerator["image"] if kind.type is BackendType.LLAMA_CPP else accelerator["images"][kind.type]
    )
    return image


def test_dev_builds_locally_without_pushing() -> None:
    assert raw()["build"]["local"].get("push") is None, (
        "by default skaffold decides (push to a remote cluster)"
    )
    assert config(["dev"])["build"]["local"]["push"] is False
