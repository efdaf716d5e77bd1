"""The `localmodel` console script dispatches to each component's own entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localmodel import __version__

LOCALMODEL = Path(sys.executable).parent / "localmodel"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert LOCALMODEL.exists(), "the console script is missing: run `bash scripts/setup.sh`"
    return subprocess.run([str(LOCALMODEL), *args], capture_output=True, text=True, timeout=60)


def test_version() -> None:
    assert run("--version").stdout.strip() == f"localmodel {__version__}"


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("backend", "--addr"),
        ("router", "--model"),
        ("serve", "--filename"),
        ("run", "--task"),
        ("fetch", "--sha256"),
        ("operator", "--config"),
        ("bench", "--concurrency"),
    ],
)
def test_each_command_has_its_own_flags(command: str, flag: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0 and flag in result.stdout
    assert f"localmodel {command}" in result.stdout


def test_unknown_command_fails() -> None:
    result = run("nonsense")
    assert result.returncode == 2 and "invalid choice" in result.stderr
