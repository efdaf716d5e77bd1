"""The real `helm` (and checkov) on the chart: find the binaries, render with values, parse the output.

Both are installed by `scripts/setup.sh` into `.tools/`; a test that needs one fails, naming the command
that installs it, when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "localmodel"
TOOLS = ROOT / ".tools"
RELEASE, NAMESPACE = "lm", "localmodel"


def tool(name: str, *, in_venv: str | None = None) -> str:
    """`.tools/bin/NAME` (or `.tools/VENV/bin/NAME`), else NAME on PATH; fail if neither."""
    local = TOOLS / (in_venv or "") / "bin" / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: run `bash scripts/setup.sh` (it puts {name} in {local.parent})"
        )
    return found


def helm(
    *args: str, values: dict[str, Any] | None = None, folder: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [tool("helm"), *args]
    if values is not None:
        assert folder is not None, "values are written to a file in `folder`"
        values_file = folder / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        command += ["--values", str(values_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def render_text(values: dict[str, Any], folder: Path, *extra: str) -> str:
    """`helm template` output; fails the test with helm's message when rendering fails."""
    result = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra, values=values, folder=folder
    )
    if result.returncode != 0:
        pytest.fail(f"helm template failed:\n{result.stderr}")
    return result.stdout


def render(values: dict[str, Any], folder: Path, *extra: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(values, folder, *extra)) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, (
        f"{len(matches)} {kind} named {name}: {[o['metadata']['name'] for o in matches]}"
    )
    return matches[0]
