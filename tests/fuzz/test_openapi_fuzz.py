"""The fuzz stage: schemathesis against the router's own OpenAPI document, over real HTTP, in front of real
SmolLM2 backends (local mode, as users run it).

Every documented operation gets generated requests (coverage, fuzzing and stateful phases; settings in
schemathesis.toml). None may answer 5xx, a status the document does not declare, or a body unlike the
schema it declares; afterwards both backends are the processes they were before, and they still answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fuzz import served
from tests.support.local_mode import LocalMode
from tests.support.models import require_model
from tests.support.processes import backends_of

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
RUN_SECONDS = 240  # the whole schemathesis run; about a minute on 2 cores


def manifest(name: str, path: Path, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": name},
        "spec": {"model": {"url": path.as_uri()}, **spec},
    }


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    """Local mode with SmolLM2 twice, for chat and completions and for embeddings; generation bounded."""
    smollm2 = require_model("smollm2")
    folder = tmp_path_factory.mktemp("fuzz")
    chat = manifest(
        served.CHAT,
        smollm2,
        aliases=[served.ALIAS],
        tasks=["chat", "completion"],
        maxTokens=served.MAX_TOKENS,
        backend={"engine": {"contextSize": 1024}},
    )
    embedding = manifest(
        served.EMBEDDING, smollm2, tasks=["embedding"], backend={"engine": {"contextSize": 512}}
    )
    (folder / "models.yaml").write_text(yaml.safe_dump_all([chat, embedding]))
    (folder / "router.yaml").write_text(yaml.safe_dump({"max_inputs_per_request": served.MAX_INPUTS}))
    args = ["serve", "-f", str(folder / "models.yaml"), "--config", str(folder / "router.yaml")]
    with LocalMode(args, folder / "cache", folder / "serve.log") as running:
        yield running


def schemathesis_command() -> list[str]:
    """The `schemathesis` CLI of this environment; a clear failure where it is not installed."""
    command = Path(sys.executable).with_name("schemathesis")
    if not command.exists():
        pytest.fail(f"{command} is missing: it comes with the dev extra; run `bash scripts/setup.sh`")
    return [str(command), "--config-file", str(CONFIG)]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def matches(self, method: str, path: str) -> bool:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.path))
        return method == self.method and re.fullmatch(pattern, path) is not None


def documented_operations(document: dict[str, Any]) -> list[Operation]:
    paths = document["paths"]
    return [Operation(method.upper(), path) for path, operations in paths.items() for method in operations]


UNDOCUMENTED = "(methods the document does not list)"  # schemathesis's probes: each must be a 405


def tally(entries: list[dict[str, Any]], operations: list[Operation]) -> dict[str, Counter[int]]:
    """Statuses answered per operation (by label), from the HAR log of every request sent."""
    statuses: dict[str, Counter[int]] = {operation.label: Counter() for operation in operations}
    statuses[UNDOCUMENTED] = Counter()
    for entry in entries:
        method, path = entry["request"]["method"], httpx.URL(entry["request"]["url"]).path
        label = next((o.label for o in operations if o.matches(method, path)), UNDOCUMENTED)
        statuses[label][entry["response"]["status"]] += 1
    return statuses


def table(statuses: dict[str, Counter[int]]) -> str:
    width = max(len(label) for label in statuses)
    lines = [f"{'operation':<{width}}  requests  5xx  statuses"]
    for label, counts in statuses.items():
        server_errors = sum(n for status, n in counts.items() if status >= 500)
        answered = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
        lines.append(f"{label:<{width}}  {counts.total():>8}  {server_errors:>3}  {answered}")
    return "\n".join(lines)


def _text(output: str | bytes | None) -> str:
    return (output.decode(errors="replace") if isinstance(output, bytes) else output or "")[-12000:]


def _report(folder: Path, kind: str, output: str) -> Path:
    """schemathesis's report of `kind` (har, json); a failure showing its output when it wrote none."""
    found = sorted(folder.glob(f"{kind}-*.json"))
    if not found:
        pytest.fail(f"schemathesis wrote no {kind} report; its output:\n{output}")
    return found[0]


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Written to the run's output as it happens, passing or failing, so CI's log keeps the figures."""
    with capsys.disabled():
        sys.stdout.write(f"\n{text}\n")


def test_fuzzing_every_operation_finds_no_5xx_and_crashes_no_backend(
    serving: LocalMode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serving.process is not None
    backends = backends_of(serving.process.pid)
    assert len(backends) == 2, backends
    document = httpx.get(f"{serving.url}/openapi.json", timeout=10).json()
    operations = documented_operations(document)

    command = [
        *schemathesis_command(),
        "run",
        f"{serving.url}/openapi.json",
        "--report=har,json",
        f"--report-dir={tmp_path / 'reports'}",
        "--no-color",
        "--output-sanitize=false",  # show bodies as sent (`max_tokens` looks like a secret to it)
    ]
    # Run in the test's folder, where schemathesis and Hypothesis leave their caches; the hooks module is
    # imported as tests.fuzz.hooks from the repository root.
    pythonpath = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    try:
        run = subprocess.run(
            command,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"schemathesis still running after {RUN_SECONDS}s; its output:\n{_text(error.stdout)}")
    output = f"{run.stdout[-12000:]}\n{run.stderr[-4000:]}"
    summary = json.loads(_report(tmp_path / "reports", "json", output).read_text())
    entries = json.loads(_report(tmp_path / "reports", "har", output).read_text())["log"]["entries"]
    statuses = tally(entries, operations)
    server_errors = sum(n for counts in statuses.values() for status, n in counts.items() if status >= 500)
    crashed = [pid for pid in backends if pid not in backends_of(serving.process.pid)]
    restarts = serving.log().count("restarting in")  # local mode's supervisor, after a backend ended
    report(
        capsys,
        f"{table(statuses)}\n"
        f"Fuzz: {len(entries)} requests over {len(operations)} operations in "
        f"{summary['running_time']:.0f}s: {server_errors} 5xx, {len(crashed)} backend crashes",
    )

    assert run.returncode == 0, f"schemathesis found failures:\n{output}"
    assert summary["errors"] == [] and summary["failures"] == [], summary
    assert server_errors == 0
    assert not [label for label, counts in statuses.items() if label != UNDOCUMENTED and not counts]
    assert set(statuses[UNDOCUMENTED]) <= {405}
    # Generated requests reached the backends, not only the router's checks.
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/tokenize"):
        assert statuses[f"POST {path}"][200] > 0, path

    # No backend crashed: the same processes, never restarted, still serving both models.
    assert not crashed and backends_of(serving.process.pid) == backends
    assert restarts == 0, serving.log()
    ready = httpx.get(f"{serving.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["models"] == [served.CHAT, served.EMBEDDING]
    client = serving.client()
    reply = client.chat.completions.create(model=served.CHAT, messages=[{"role": "user", "content": "Hi"}])
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= served.MAX_TOKENS
    assert len(client.embeddings.create(model=served.EMBEDDING, input="still here").data[0].embedding) == 576
