"""The router in Kubernetes discovery mode, as its real entry point, against kmock's emulator.

The test plays the EndpointSlice controller (it publishes slices for backends it started); the router
finds LocalModels and slices by watching, as in a cluster. Backends are real SmolLM2 processes where the
answer matters, and in-process fake backends (real gRPC servers answering with their own name) where the
question is only which replica answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import kmock
import openai
import pytest

from localmodel.ports import free_port
from tests.support.api_server import LOCALMODELS, Cluster
from tests.support.backend_process import BackendProcess
from tests.support.backend_status import running_requests
from tests.support.fake_backend import start_fake_backend
from tests.support.router import RouterProcess
from tests.support.waiting import eventually

SMOLLM2 = {"model": {"url": "hf://HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2.gguf"}}


@contextlib.asynccontextmanager
async def kube_router(**settings: object) -> AsyncIterator[RouterProcess]:
    env = {f"LOCALMODEL_ROUTER_{key.upper()}": str(value) for key, value in settings.items()}
    async with RouterProcess(["--discovery", "kubernetes"], env=env) as router:
        yield router


@contextlib.asynccontextmanager
async def fake_replicas(*names: str) -> AsyncIterator[dict[str, str]]:
    """In-process backends answering with their own name: address → name."""
    started = [await start_fake_backend(text=f"replica-{name}") for name in names]
    try:
        yield {f"127.0.0.1:{port}": name for (_, port, _), name in zip(started, names, strict=True)}
    finally:
        await asyncio.gather(*(server.stop(None) for server, _, _ in started))


async def ask(router: RouterProcess, model: str, text: str = "Hi", history: list[Any] | None = None) -> str:
    async with router.async_client() as client:
        answer = await client.chat.completions.create(
            model=model, messages=[*(history or []), {"role": "user", "content": text}], max_tokens=8
        )
    content = answer.choices[0].message.content
    assert content is not None
    return content.removeprefix("replica-")


async def test_endpoint_slices_decide_which_backend_answers(cluster: Cluster) -> None:
    await cluster.apply_model("chat", {**SMOLLM2, "servedName": "smol", "aliases": ["gpt-4o-mini"]})
    async with fake_replicas("a", "b") as replicas, kube_router(hold_timeout_seconds=1) as router:
        a, b = list(replicas)
        await cluster.set_endpoint("chat", a)

        async def only(name: str) -> bool:
            return {await ask(router, "smol") for _ in range(4)} == {name}

        await eventually(lambda: only("a"), "routed to a")
        await cluster.set_endpoint("chat", b)
        await eventually(lambda: _answers_from(router, {"a", "b"}, model="smol"), "b added next to a")
        await cluster.set_endpoint("chat", a, ready=False)  # a fails its readiness probe
        await eventually(lambda: only("b"), "not-ready a left out")
        await cluster.remove_endpoint("chat", b)
        await cluster.set_endpoint("chat", a)
        await eventually(lambda: only("a"), "removed b left out")
        assert await ask(router, "gpt-4o-mini") == "a"  # aliases route too

        # No ready endpoint, one replica wanted: held, then 503 with Retry-After after the hold timeout.
        await cluster.set_endpoint("chat", a, ready=False)
        await eventually(lambda: _routes_nothing(router, "smol"), "a left out again")
        async with httpx.AsyncClient() as client:
            refused = await client.post(f"{router.url}/v1/chat/completions", json=_chat("smol"), timeout=10)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1

        await cluster.delete_model("chat")
        await eventually(lambda: _not_found(router, "smol"), "model removed")
        with pytest.raises(openai.NotFoundError):
            await ask(router, "smol")


async def test_endpoint_changes_reach_routing_well_under_a_second(cluster: Cluster) -> None:
    await cluster.apply_model("chat", SMOLLM2)
    async with fake_replicas("a", "b") as replicas, kube_router() as router:
        a, b = list(replicas)
        await cluster.set_endpoint("chat", a)
        await eventually(lambda: _answers_from(router, {"a"}, tries=1), "a routed")
        await cluster.set_endpoint("chat", a, ready=False)
        await cluster.set_endpoint("chat", b)
        seconds = await eventually(lambda: _answers_from(router, {"b"}, tries=1), "b routed", timeout=1.0)
        print(f"endpoint change → routing: {seconds * 1000:.0f} ms (incl. one request)")  # noqa: T201


async def test_a_watch_that_expires_is_listed_again(cluster: Cluster) -> None:
    await cluster.apply_model("chat", SMOLLM2)
    async with fake_replicas("a", "b") as replicas, kube_router() as router:
        a, b = list(replicas)
        await cluster.set_endpoint("chat", a)
        await eventually(lambda: _answers_from(router, {"a"}, tries=1), "a routed")
        lists_before = _lists(cluster)
        cluster.server.expire_watches()  # 410 Gone on every open watch
        await eventually(lambda: _async(_lists(cluster) >= lists_before + 2), "both resources listed again")
        await cluster.set_endpoint("chat", a, ready=False)
        await cluster.set_endpoint("chat", b)
        await eventually(lambda: _answers_from(router, {"b"}, tries=3), "changes after the relist seen")
        metrics = await _metrics(router)
        assert (
            'localmodel_router_watch_restarts_total{cause="expired",resource="endpointslices"} 1.0' in metrics
        )


async def test_prefix_hash_keeps_a_conversation_on_one_replica(cluster: Cluster) -> None:
    await cluster.apply_model("chat", {**SMOLLM2, "loadBalancing": {"strategy": "PrefixHash"}})
    async with fake_replicas("a", "b", "c") as replicas, kube_router() as router:
        for address in replicas:
            await cluster.set_endpoint("chat", address)
        await eventually(lambda: _has_endpoints(router, 3), "three replicas routed")
        homes: dict[str, set[str]] = {}
        for turn in range(3):
            for n in range(12):
                # Sequential requests: load never bounds the choice, so each conversation stays home.
                homes.setdefault(f"c{n}", set()).add(
                    await ask(router, "chat", f"conversation {n} turn {turn}"[:15])
                )
        assert all(len(replicas_used) == 1 for replicas_used in homes.values()), homes
        assert len(set().union(*homes.values())) >= 2  # and conversations spread over replicas


async def test_least_outstanding_spreads_concurrent_streams_over_real_backends(
    cluster: Cluster, smollm2_path: Path
) -> None:
    await cluster.apply_model("chat", SMOLLM2)
    # Two replicas on one machine get a share of its cores each, as two pods with CPU limits would:
    # two backends each spinning all the cores' threads stall each other (see threads_per_backend).
    replica = ["--model", str(smollm2_path), "--context-size", "2048", "--threads", "1"]
    with BackendProcess(replica) as first, BackendProcess(replica) as second:
        first.wait_ready()
        second.wait_ready()
        async with kube_router() as router:
            for backend in (first, second):
                await cluster.set_endpoint("chat", backend.address)
            async with router.async_client() as client:
                await eventually(lambda: _has_endpoints(router, 2), "both replicas routed")
                streams = [
                    await client.chat.completions.create(
                        model="chat",
                        # A long answer: both must still be generating when their backends are asked.
                        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
                        max_tokens=200,
                        temperature=0,
                        stream=True,
                    )
                    for _ in range(2)
                ]
                firsts = [await anext(aiter(stream)) for stream in streams]
                assert all(first.choices for first in firsts)
                running = [await running_requests(backend.address) for backend in (first, second)]
                assert running == [1, 1]  # one stream each, not two on one replica
                texts = [
                    "".join([c.choices[0].delta.content or "" async for c in s if c.choices]) for s in streams
                ]
                assert all(text.strip() for text in texts)


async def test_an_unreachable_replica_is_retried_around(
    cluster: Cluster, chat_backend: BackendProcess
) -> None:
    await cluster.apply_model("chat", SMOLLM2)
    dead = f"127.0.0.1:{free_port()}"  # a pod that is gone but still listed as ready
    async with kube_router(unreachable_grace_seconds=0) as router:
        await cluster.set_endpoint("chat", dead)
        await cluster.set_endpoint("chat", chat_backend.address)
        await eventually(lambda: _has_endpoints(router, 2), "both replicas routed")
        answers = [await ask(router, "chat", "Say hello.") for _ in range(4)]
        assert all(answer.strip() for answer in answers)
        metrics = await _metrics(router)
        assert 'localmodel_router_retries_total{model="chat"}' in metrics
        assert 'localmodel_router_retries_total{model="chat"} 0.0' not in metrics


async def test_scale_from_zero_patches_the_scale_subresource_holds_and_answers(
    cluster: Cluster, chat_backend: BackendProcess
) -> None:
    await cluster.apply_model("chat", {**SMOLLM2, "minReplicas": 0, "maxReplicas": 2})
    async with kube_router(stream_keepalive_seconds=0.2, hold_timeout_seconds=30) as router:
        async with httpx.AsyncClient(timeout=60) as client:
            await eventually(lambda: _lists_model(router, "chat"), "model listed")
            body = {**_chat("chat", "Say hello."), "stream": True}
            async with client.stream("POST", f"{router.url}/v1/chat/completions", json=body) as response:
                assert response.status_code == 200  # started, since the model takes longer than 0.2 s
                lines = aiter(response.aiter_lines())
                assert await anext(lines) == ": waiting for the model"  # an SSE comment, ignored by clients
                await cluster.wait_for(
                    lambda: cluster.model("chat")["spec"].get("replicas") == 1, "scaled to 1"
                )
                scale_patches = [
                    r for r in cluster.server[kmock.resource(LOCALMODELS)] if r.subresource == "scale"
                ]
                assert [r.data["spec"] for r in scale_patches] == [{"replicas": 1}]
                load = (await client.get(f"{router.url}/load")).json()["models"]
                assert load == [{"model": "chat", "localModel": "ai/chat", "active": 1, "idleSeconds": 0.0}]

                await cluster.set_endpoint("chat", chat_backend.address)  # the new pod is ready
                rest = [line async for line in lines]
        text = "".join(_content(line) for line in rest)
        assert text.strip(), rest
        assert rest[-2:] == ["data: [DONE]", ""] or rest[-1] == "data: [DONE]"
        assert 'localmodel_router_scale_from_zero_total{model="chat"} 1.0' in await _metrics(router)


async def test_held_requests_are_bounded_in_number_and_time(cluster: Cluster) -> None:
    # A model at zero whose replica never comes (no kubelet here): held, then refused.
    await cluster.apply_model("chat", {**SMOLLM2, "minReplicas": 0})
    async with kube_router(max_held_per_model=1, hold_timeout_seconds=1.5) as router:
        await eventually(lambda: _lists_model(router, "chat"), "model listed")
        async with httpx.AsyncClient(timeout=30) as client:
            held = asyncio.create_task(client.post(f"{router.url}/v1/chat/completions", json=_chat("chat")))
            await eventually(lambda: _async(cluster.model("chat")["spec"].get("replicas") == 1), "asked")
            started = time.monotonic()
            full = await client.post(f"{router.url}/v1/chat/completions", json=_chat("chat"))
            assert full.status_code == 503 and time.monotonic() - started < 1.0  # at once: queue full
            assert int(full.headers["retry-after"]) >= 1
            assert "requests wait for it already" in full.json()["error"]["message"]
            late = await held
        assert late.status_code == 503  # the deadline passed
        assert int(late.headers["retry-after"]) >= 1
        assert "no ready backend after 2s" in late.json()["error"]["message"]


async def test_a_model_whose_pods_crash_is_refused_at_once_saying_why(cluster: Cluster) -> None:
    await cluster.apply_model("chat", SMOLLM2)
    crashed = (
        "the backend of pod chat-7d9 was killed by SIGSEGV (signal 11). Most likely a crash inside "
        "llama.cpp. On Intel CPUs with AMX ... `--repack off` (engine option `repack:off`). "
        "Last output: Fatal Python error: ..."
    )
    status = {
        "conditions": [{"type": "Ready", "status": "False", "reason": "BackendCrashed", "message": crashed}]
    }
    await cluster.server.patch(
        f"{cluster.path('chat')}/status", json={"status": status}
    )  # as the operator does
    async with kube_router(hold_timeout_seconds=30) as router:
        await eventually(lambda: _lists_model(router, "chat"), "model listed")
        async with httpx.AsyncClient(timeout=30) as client:
            started = time.monotonic()
            refused = await client.post(f"{router.url}/v1/chat/completions", json=_chat("chat"))
        assert time.monotonic() - started < 5  # not held for the 30 s a starting pod would get
        assert refused.status_code == 503
        message = refused.json()["error"]["message"]
        assert "cannot start: the backend of pod chat-7d9 was killed by SIGSEGV" in message
        assert "repack:off" in message and "Last output" not in message


# --- helpers ---


def _chat(model: str, text: str = "Hi") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8}


def _content(line: str) -> str:
    if not line.startswith("data: {"):
        return ""
    choices = json.loads(line.removeprefix("data: "))["choices"]
    return "".join(choice["delta"].get("content") or "" for choice in choices)


async def _async(value: bool) -> bool:
    return value


async def _answers_from(router: RouterProcess, names: set[str], tries: int = 8, model: str = "chat") -> bool:
    try:
        return {await ask(router, model) for _ in range(tries)} == names
    except openai.APIError:
        return False


async def _routes_nothing(router: RouterProcess, model: str) -> bool:
    async with httpx.AsyncClient() as client:
        ready = await client.get(f"{router.url}/readyz")
    return ready.status_code == 503 and model in ready.json()["models"]


async def _metrics(router: RouterProcess) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{router.url}/metrics")).text


async def _has_endpoints(router: RouterProcess, count: int) -> bool:
    return f'localmodel_router_endpoints{{model="chat"}} {count}.0' in await _metrics(router)


async def _lists_model(router: RouterProcess, model: str) -> bool:
    async with httpx.AsyncClient() as client:
        listed = await client.get(f"{router.url}/v1/models")
    return model in [entry["id"] for entry in listed.json()["data"]]


async def _not_found(router: RouterProcess, model: str) -> bool:
    return not await _lists_model(router, model)


def _lists(cluster: Cluster) -> int:
    return sum(
        1
        for request in cluster.server[kmock.action.LIST]
        if request.params.get("watch", "false").lower() != "true"
    )
