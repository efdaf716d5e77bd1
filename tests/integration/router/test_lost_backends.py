"""A request whose backend dies while serving it is never replayed on another replica."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx

from tests.support.backend_process import BackendProcess
from tests.support.backend_status import running_requests
from tests.support.router import RouterProcess
from tests.support.waiting import eventually


async def test_a_backend_killed_mid_request_is_a_502_and_the_request_is_not_replayed(
    smollm2_path: Path,
) -> None:
    # One core each: two replicas on a 2-core machine (see threads_per_backend).
    replica = ["--model", str(smollm2_path), "--context-size", "2048", "--threads", "1"]
    with BackendProcess(replica) as first, BackendProcess(replica) as second:
        first.wait_ready()
        second.wait_ready()
        backends = {first.address: first, second.address: second}
        async with (
            RouterProcess(["--model", f"pair={first.address},{second.address}"]) as router,
            httpx.AsyncClient(base_url=router.url, timeout=60) as client,
        ):
            body = {"model": "pair", "prompt": "Write a long story about a dragon.", "max_tokens": 400}
            answer = asyncio.ensure_future(client.post("/v1/completions", json=body))

            serving: list[str] = []

            async def reached_a_backend() -> bool:
                serving[:] = [address for address in backends if await running_requests(address) == 1]
                return bool(serving)

            await eventually(reached_a_backend, "the request reached a backend")
            (victim,) = serving
            os.kill(backends[victim].process.pid, signal.SIGKILL)
            reply = await answer
            assert reply.status_code == 502, reply.text
            assert "lost while serving this request" in reply.json()["error"]["message"]
            (survivor,) = set(backends) - {victim}
            assert await running_requests(survivor) == 0  # not replayed there
            metrics = (await client.get("/metrics")).text
            assert 'localmodel_router_backends_lost_during_request_total{model="pair"} 1.0' in metrics
            assert 'localmodel_router_retries_total{model="pair"}' not in metrics


async def test_a_backend_killed_mid_stream_ends_the_stream_with_an_error_and_is_counted(
    smollm2_path: Path,
) -> None:
    with BackendProcess(["--model", str(smollm2_path), "--context-size", "2048"]) as backend:
        backend.wait_ready()
        async with (
            RouterProcess(["--model", f"solo={backend.address}"]) as router,
            httpx.AsyncClient(base_url=router.url, timeout=60) as client,
        ):
            body = {"model": "solo", "prompt": "Once upon a time, in a land far away,", "max_tokens": 400}
            body |= {"stream": True, "temperature": 0}  # a long answer: still running when killed
            events = []
            async with client.stream("POST", "/v1/completions", json=body) as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line)
                        if len(events) == 3:  # streaming for real: now its backend dies
                            os.kill(backend.process.pid, signal.SIGKILL)
            assert events[-1] == "data: [DONE]"
            assert '"error"' in events[-2]
            metrics = (await client.get("/metrics")).text
            assert 'localmodel_router_backends_lost_during_request_total{model="solo"} 1.0' in metrics
