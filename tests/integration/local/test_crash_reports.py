"""A backend that dies by a signal is reported with the signal, what to do and its last output.

The backend is the real one, made to crash in its warm-up decode as llama.cpp's AMX kernels crash on an
affected Intel CPU: a `sitecustomize` on the backend's PYTHONPATH (set through the manifest's `env`)
replaces the warm-up with one that writes a line and kills the process with SIGSEGV. Everything else
(local mode, the supervisor, the router, faulthandler's report) is the product's own code.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from tests.integration.local.test_serve import manifest, write
from tests.support.local_mode import LocalMode
from tests.support.models import require_model

STAND_IN = """
import signal
import sys
import threading

import localmodel_llamacpp.engine as engine


def crashing_warm_up(llama):
    sys.stderr.write("stand-in: crashing in the warm-up decode\\n")
    sys.stderr.flush()
    signal.pthread_kill(threading.get_ident(), signal.SIGSEGV)  # on this thread, as a real fault is


engine.warm_up = crashing_warm_up
"""


@pytest.fixture
def crashing_env(tmp_path: Path) -> list[dict[str, str]]:
    folder = tmp_path / "stand-in"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(STAND_IN)
    return [{"name": "PYTHONPATH", "value": str(folder)}]


def test_a_crash_in_warm_up_stops_local_mode_with_the_signal_and_output(
    tmp_path: Path, crashing_env: list[dict[str, str]]
) -> None:
    models = write(
        tmp_path / "m", "crashing.yaml", manifest("crashing", require_model("smollm2"), env=crashing_env)
    )
    served = LocalMode(["serve", "-f", str(models)], tmp_path / "cache", tmp_path / "serve.log").start()
    assert served.wait_exit(120) == 1
    log = served.log()
    assert "was killed by SIGSEGV (signal 11) before it was ready" in log
    assert "--repack off" in log  # the known cause and what to do
    assert "stand-in: crashing in the warm-up decode" in log  # the backend's own last output
    assert "Fatal Python error: Segmentation fault" in log  # faulthandler's report of where it died


def test_a_model_crashing_at_start_answers_why_and_readyz_says_so(
    tmp_path: Path, crashing_env: list[dict[str, str]]
) -> None:
    # Scaled to zero: local mode serves, and the first request starts the backend that crashes.
    lazy = manifest("crashing", require_model("smollm2"), env=crashing_env, minReplicas=0)
    models = write(tmp_path / "m", "crashing.yaml", lazy)
    with LocalMode(["serve", "-f", str(models)], tmp_path / "cache", tmp_path / "serve.log") as served:
        with pytest.raises(openai.APIStatusError) as refused:
            served.client().completions.create(model="crashing", prompt="The sea", max_tokens=4)
        assert refused.value.status_code == 503
        message = refused.value.message
        assert "cannot start: its backend process was killed by SIGSEGV (signal 11)" in message
        assert "--repack off" in message
        assert "Last output" not in message  # the output is for operators, not API clients
        assert "no backend could be reached" not in message

        ready = httpx.get(f"{served.url}/readyz", timeout=10)
        assert ready.status_code == 503
        failure = ready.json()["failures"]["crashing"]
        assert "SIGSEGV" in failure["reason"]
        assert "stand-in: crashing in the warm-up decode" in json.dumps(failure["lastOutput"])
        assert "was killed by SIGSEGV (signal 11) before it was ready" in served.log()
