"""Scale-from-zero cold start in local mode: request → first token while no backend process runs.

`localmodel serve` runs a SmolLM2 manifest with `minReplicas: 0` and a one-second scale-down delay. Each
round waits until the model is back at zero replicas (no backend process), then times a streamed chat
request from sending it to its first content chunk: process spawn, imports, model load, health check,
the held request's release and the first token. The same request against the running replica gives the
warm figure for comparison.

    python -m bench.cold_start [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import openai
import yaml
from rich.console import Console
from rich.table import Table

from scripts.model_files import ensure_model
from tests.support.local_mode import LocalMode
from tests.support.processes import backends_of

MESSAGES = [{"role": "user", "content": "Say hello."}]


def time_to_first_token(client: openai.OpenAI) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(model="lazy", messages=MESSAGES, max_tokens=8, stream=True)  # type: ignore[arg-type]
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            elapsed = time.perf_counter() - started
            stream.close()
            return elapsed
    raise RuntimeError("the stream ended without content")


def wait_for_zero(served: LocalMode, timeout: float = 30.0) -> None:
    assert served.process is not None
    deadline = time.monotonic() + timeout
    while backends_of(served.process.pid):
        if time.monotonic() > deadline:
            raise RuntimeError("the model did not scale back to zero")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    model = ensure_model("smollm2")
    manifest = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "lazy"},
        "spec": {
            "model": {"url": model.as_uri()},
            "backend": {"engine": {"contextSize": 2048}},
            "minReplicas": 0,
            "scaleDownDelaySeconds": 1,
        },
    }
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        (folder / "lazy.yaml").write_text(yaml.safe_dump(manifest))
        served = LocalMode(["serve", "-f", str(folder / "lazy.yaml")], folder / "cache", folder / "serve.log")
        with served:
            client = served.client()
            cold, warm = [], []
            for _ in range(args.rounds):
                wait_for_zero(served)
                cold.append(time_to_first_token(client))
                warm.append(time_to_first_token(client))  # the replica just started is still up

    table = Table(title="SmolLM2-135M Q4_1, local mode, request → first token")
    for column in ("", "median s", "min s", "max s"):
        table.add_column(column, justify="right")
    for label, figures in (("from zero replicas", cold), ("replica running", warm)):
        table.add_row(
            label, *(f"{value:.2f}" for value in (statistics.median(figures), min(figures), max(figures)))
        )
    console = Console()
    console.print(table)
    verdict = "met" if statistics.median(cold) <= 2 else "NOT met"
    console.print(f"rounds: {args.rounds}; target ≤ 2 s from zero (median): {verdict}")


if __name__ == "__main__":
    main()
