"""`localmodel bench` as users run it, against the real router over the zero-cost fake backend."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from localmodel.ports import free_port
from tests.support.fake_backend import start_fake_backend
from tests.support.router import RouterProcess

LOCALMODEL = Path(sys.executable).parent / "localmodel"


async def bench(*args: str) -> tuple[int, str]:
    """Run the console script without blocking this loop (the fake backend serves on it)."""
    assert LOCALMODEL.exists(), "the console script is missing: run `bash scripts/setup.sh`"
    process = await asyncio.create_subprocess_exec(
        str(LOCALMODEL),
        "bench",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},  # the table's columns unwrapped
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_bench_reports_each_level_with_the_routers_usage_figures(tmp_path: Path) -> None:
    server, port, fake = await start_fake_backend(pieces=16)
    try:
        async with RouterProcess(["--model", f"fake=127.0.0.1:{port}"]) as router:
            code, output = await bench(
                router.url, "--concurrency", "1,2", "--requests", "4", "--max-tokens", "8",
                "--json", str(tmp_path / "bench.json"),
            )  # fmt: skip
    finally:
        await server.stop(grace=None)
    assert code == 0, output
    assert "tokens/s" in output and "the server's usage figures" in output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["context"]["model"] == "fake"  # the first (only) model the router lists
    levels = report["levels"]
    assert [(level["concurrency"], level["requests"], level["errors"]) for level in levels] == [
        (1, 4, 0),
        (2, 4, 0),
    ]
    for level in levels:
        assert level["tokens"] == 4 * 8 and level["source"] == "usage" and level["tokens_per_second"] > 0
        assert all(r["chunks"] == 8 and r["ttft"] <= r["latency"] for r in level["results"])
    # One warm-up request, then 4 per level; each asked for at most 8 tokens.
    assert fake.calls["PredictStream"] == 1 + 2 * 4
    assert fake.last_request is not None and fake.last_request.tokens == 8


async def test_bench_against_nothing_fails_with_a_message() -> None:
    code, output = await bench(f"http://127.0.0.1:{free_port()}", "--requests", "1", "--concurrency", "1")
    assert code == 1 and "could not list the models" in output
