"""`localmodel serve` for real: manifests in, backend processes on loopback, the openai client as user."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.support.local_mode import LocalMode
from tests.support.models import require_model
from tests.support.processes import backends_of, is_running
from tests.support.waiting import wait_until

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def manifest(name: str, path: Path, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": name},
        "spec": {"model": {"url": path.as_uri()}, "backend": {"engine": {"contextSize": 1024}}, **spec},
    }


def write(folder: Path, name: str, *documents: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump_all(documents))
    return folder


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    """A folder of two manifests: SmolLM2 for chat (with an alias), Gemma-3 for embeddings."""
    folder = tmp_path_factory.mktemp("manifests")
    smollm2 = manifest("smollm2", require_model("smollm2"), aliases=["gpt-4o-mini"])
    smollm2["spec"]["model"]["sha256"] = SMOLLM2_SHA256
    write(folder, "smollm2.yaml", smollm2)
    write(folder, "gemma.yaml", manifest("gemma", require_model("gemma3"), tasks=["embedding"]))
    work = tmp_path_factory.mktemp("local")
    with LocalMode(["serve", "-f", str(folder)], work / "cache", work / "serve.log") as served:
        yield served


def test_two_manifests_served_through_the_openai_client(two_models: LocalMode) -> None:
    client = two_models.client()
    assert sorted(model.id for model in client.models.list()) == ["gemma", "gpt-4o-mini", "smollm2"]
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    assert reply.choices[0].message.content and reply.usage and reply.usage.completion_tokens > 0
    embedding = client.embeddings.create(model="gemma", input="The sea is blue.").data[0].embedding
    assert len(embedding) == 640  # Gemma-3-270M's hidden size
    assert "OpenAI-compatible API at" in "".join(two_models.stdout)


def test_a_model_answers_only_the_tasks_its_manifest_names(two_models: LocalMode) -> None:
    client = two_models.client()
    with pytest.raises(
        openai.BadRequestError, match="'gemma' does not serve chat requests; its tasks are embedding"
    ):
        client.chat.completions.create(
            model="gemma", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    with pytest.raises(openai.BadRequestError, match="'gemma' does not serve completion requests"):
        client.completions.create(model="gemma", prompt="Hi", max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="'smollm2' does not serve embedding requests"):
        client.embeddings.create(model="smollm2", input="Hi")


def test_a_killed_backend_is_restarted_and_serves_again(two_models: LocalMode) -> None:
    assert two_models.process is not None
    client = two_models.client()

    def chat_backend() -> list[int]:
        return [
            pid for pid, argv in backends_of(two_models.process.pid).items() if "--embeddings" not in argv
        ]

    (victim,) = chat_backend()
    os.kill(victim, signal.SIGKILL)
    # The next request is held while the replica restarts (backoff 1 s, then load), not refused.
    reply = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.choices[0].finish_reason in ("stop", "length")
    (replacement,) = chat_backend()
    assert replacement != victim
    assert f"process {victim} was killed by SIGKILL (signal 9)" in two_models.log()


def test_sigterm_drains_requests_then_leaves_no_process(tmp_path: Path) -> None:
    models = write(tmp_path / "m", "m.yaml", manifest("smollm2", require_model("smollm2")))
    with LocalMode(["serve", "-f", str(models)], tmp_path / "cache", tmp_path / "serve.log") as served:
        assert served.process is not None
        backends = list(backends_of(served.process.pid))
        assert len(backends) == 1
        stream = served.client().chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Count from one to one hundred."}],
            max_tokens=64,
            temperature=0,
            stream=True,
        )
        chunks = [next(stream)]  # the stream is open and generating
        served.terminate()
        chunks += list(stream)  # in flight when the signal came: it still finishes
        assert len(chunks) > 2 and chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert served.wait_exit() == 0
        for pid in backends:
            wait_until(lambda pid=pid: not is_running(pid), f"backend {pid} stopped", timeout=10, every=0.1)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localmodel.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_an_invalid_field_fails_naming_the_field(tmp_path: Path) -> None:
    bad = manifest("smollm2", tmp_path / "m.gguf")
    bad["spec"]["backend"]["engine"]["contextSize"] = -5
    bad["spec"]["replicas"] = "two"
    result = run_cli("serve", "-f", str(write(tmp_path, "bad.yaml", bad) / "bad.yaml"))
    assert result.returncode == 2
    assert "bad.yaml: invalid LocalModel:" in result.stderr
    assert "spec.backend.engine.contextSize: Input should be greater than or equal to 1" in result.stderr
    assert "spec.replicas: Input should be a valid integer" in result.stderr


def test_a_wrong_sha256_fails_clearly(tmp_path: Path) -> None:
    wrong = manifest("smollm2", require_model("smollm2"))
    wrong["spec"]["model"]["sha256"] = "0" * 64
    result = run_cli("serve", "-f", str(write(tmp_path, "m.yaml", wrong)), "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 1
    assert f"sha256 is {SMOLLM2_SHA256}, the manifest expects {'0' * 64}" in result.stderr


def test_a_model_scaled_to_zero_wakes_on_its_first_request_and_sleeps_when_idle(tmp_path: Path) -> None:
    lazy = manifest("lazy", require_model("smollm2"), minReplicas=0, scaleDownDelaySeconds=2)
    models = write(tmp_path / "m", "lazy.yaml", lazy)
    with LocalMode(["serve", "-f", str(models)], tmp_path / "cache", tmp_path / "serve.log") as served:
        assert served.process is not None
        pid = served.process.pid
        assert backends_of(pid) == {}
        assert [model.id for model in served.client().models.list()] == ["lazy"]

        answers: list[str] = []

        def ask() -> None:
            reply = served.client().completions.create(model="lazy", prompt="The sea", max_tokens=4)
            answers.append(reply.choices[0].text)

        callers = [threading.Thread(target=ask) for _ in range(2)]  # both held, one replica started
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(120)
        assert len(answers) == 2
        assert len(backends_of(pid)) == 1
        wait_until(
            lambda: backends_of(pid) == {}, "the idle model scaled back to zero", timeout=15, every=0.1
        )
        assert "lazy: idle for 2s; scaling to zero" in served.log()


def test_run_serves_one_file_with_defaults(tmp_path: Path) -> None:
    model = require_model("smollm2")
    with LocalMode(
        ["run", str(model), "--context-size", "512"], tmp_path / "c", tmp_path / "run.log"
    ) as served:
        (listed,) = served.client().models.list()
        assert listed.id == "SmolLM2-135M-Instruct.Q4_1"  # named after the file
        reply = served.client().chat.completions.create(
            model=listed.id, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        assert served.process is not None
        (argv,) = backends_of(served.process.pid).values()
        assert argv[argv.index("--context-size") + 1] == "512"
