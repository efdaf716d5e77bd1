"""`localmodel plan` and local mode's memory check, as users run them: the real CLI on real GGUF files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.file_server import FileServer
from tests.support.models import require_model

EXAMPLE = Path(__file__).parents[3] / "examples" / "smollm2-local.yaml"
PLAN_KEYS = {
    "name",
    "weightsBytes",
    "kvCacheBytes",
    "computeBytes",
    "totalBytes",
    "gpuLayers",
    "fits",
    "reason",
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localmodel.cli", *args], capture_output=True, text=True, timeout=180
    )


def manifest(folder: Path, url: str, **spec: Any) -> Path:
    document = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "m"},
        "spec": {"model": {"url": url}, **spec},
    }
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_plan_prints_json_scripts_can_read() -> None:
    result = cli("plan", "-f", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    (plan,) = json.loads(result.stdout)
    assert PLAN_KEYS <= plan.keys()
    assert (plan["name"], plan["fits"], plan["gpuLayers"]) == ("smollm2", True, 0)
    # Weights are the file's tensors: a little less than the file (its header and vocabulary are not).
    size = require_model("smollm2").stat().st_size
    assert 0.9 * size < plan["weightsBytes"] < size
    assert plan["totalBytes"] == sum(device["totalBytes"] for device in plan["devices"])


def test_plan_says_what_does_not_fit_and_exits_1() -> None:
    result = cli("plan", "-f", str(EXAMPLE), "--memory", "200Mi")
    assert result.returncode == 1
    assert "smollm2: does not fit" in " ".join(result.stdout.split())
    on_gpus = json.loads(
        cli("plan", "-f", str(EXAMPLE), "--json", "--gpus", "2", "--gpu-memory", "8Gi").stdout
    )
    assert on_gpus[0]["verdict"] == "gpu" and on_gpus[0]["gpuLayers"] == on_gpus[0]["layers"]


def test_plan_refuses_bad_sizes_with_a_usage_error() -> None:
    result = cli("plan", "-f", str(EXAMPLE), "--gpu-memory", "lots")
    assert result.returncode == 2
    assert "'lots': expected a size such as 24Gi" in result.stderr


def test_plan_reads_a_remote_models_header_only(tmp_path: Path) -> None:
    data = require_model("gemma3").read_bytes()
    with FileServer() as server:
        url = server.add_file("/models/gemma.gguf", data)
        result = cli("plan", "-f", str(manifest(tmp_path, url)), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["fits"] is True
    asked = sum(len(r.headers.get("range", "")) > 0 for r in server.requests if r.method == "GET")
    assert 1 <= asked <= 4  # a few range requests, never the whole 250 MB file
    assert not any(r.method == "GET" and "range" not in r.headers for r in server.requests)


def test_local_mode_refuses_a_model_that_cannot_fit_and_starts_nothing(tmp_path: Path) -> None:
    # 16M tokens of SmolLM2's KV cache are hundreds of GiB: more than any test machine has.
    huge = manifest(
        tmp_path,
        require_model("smollm2").as_uri(),
        backend={"engine": {"contextSize": 16_000_000, "parallel": 1}},
    )
    result = cli("serve", "-f", str(huge), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "m does not fit this machine" in result.stderr
    assert "--skip-fit-check" in result.stderr
    assert "started process" not in result.stderr  # no backend was started
