"""From `kubectl apply` of a LocalModel to an OpenAI answer: the whole path, with only the node simulated.

Each test gets a fresh cluster (emulator), operator, router and node (tests/e2e/conftest.py) and acts as a
user would: applies or edits LocalModels in the API, and talks to the router with the official client.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import httpx
import kmock
import openai
import pytest

from tests.e2e.conftest import GEMMA_URL, Stack, eventually
from tests.support.api_server import LOCALMODELS
from tests.support.backend_status import running_requests
from tests.support.fake_backend import start_fake_backend

HELLO = [{"role": "user", "content": "Say hello."}]


async def chat(stack: Stack, model: str, max_tokens: int = 8) -> str:
    async with stack.router.async_client() as client:
        answer = await client.chat.completions.create(model=model, messages=HELLO, max_tokens=max_tokens)
    content = answer.choices[0].message.content
    assert content and content.strip(), answer
    return content


async def served(stack: Stack) -> set[str]:
    async with stack.router.async_client() as client:
        return {model.id async for model in client.models.list()}


class Load:
    """Requests sent one after another by `workers` clients until stopped; every failure is kept."""

    def __init__(self, stack: Stack, model: str, workers: int = 2) -> None:
        self.stack, self.model, self.workers = stack, model, workers
        self.answered = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()

    async def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                await chat(self.stack, self.model, max_tokens=4)
                self.answered += 1
            except (openai.APIError, AssertionError) as error:
                self.failures.append(repr(error))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)


async def test_an_applied_example_becomes_ready_and_answers(stack: Stack) -> None:
    name = await stack.apply_example("cpu.yaml")
    await stack.ready(name, replicas=2)
    assert len(stack.node.pods_of(name)) == 2
    assert name in await served(stack)
    await chat(stack, name)
    summary = stack.cluster.model(name)["status"]["summary"]
    assert summary == "Ready"


async def test_a_second_model_is_routed_beside_the_first(stack: Stack) -> None:
    first = await stack.apply_example("cpu.yaml", replicas=1)
    await stack.cluster.apply_model("gemma", {"model": {"url": GEMMA_URL}, "tasks": ["completion"]})
    await asyncio.gather(stack.ready(first, 1), stack.ready("gemma", 1))
    assert {first, "gemma"} <= await served(stack)
    await chat(stack, first)
    async with stack.router.async_client() as client:
        completion = await client.completions.create(model="gemma", prompt="One, two, three,", max_tokens=8)
    assert completion.choices[0].text.strip()


async def test_scaling_to_two_replicas_spreads_streams_over_both(stack: Stack) -> None:
    # Two pods on this 2-core node fit with a core each, as the scheduler would place them: two pods
    # of 2 spinning threads each on 2 cores would stall each other (the simulated node sets no quota).
    one_core = {
        "backend": {"engine": {"contextSize": 2048, "threads": 1}},
        "resources": {"cpu": "1", "memory": "1Gi"},
    }
    name = await stack.apply_example("cpu.yaml", replicas=1, **one_core)
    await stack.ready(name, 1)
    # kubectl scale lm/NAME --replicas=2: the scale subresource.
    await stack.cluster.server.patch(f"{stack.cluster.path(name)}/scale", json={"spec": {"replicas": 2}})
    await stack.ready(name, 2)
    await eventually(lambda: _has_endpoints(stack, name, 2), "the router routes to both")
    async with stack.router.async_client() as client:
        streams = [
            await client.chat.completions.create(
                model=name,
                messages=[{"role": "user", "content": "Write a long story about a dragon."}],
                max_tokens=200,
                stream=True,
            )
            for _ in range(2)
        ]
        for stream in streams:
            await anext(aiter(stream))  # both generating now
        running = [await running_requests(f"{pod.ip}:50051") for pod in stack.node.pods_of(name)]
        assert running == [1, 1]  # one stream each
        for stream in streams:
            async for _ in stream:
                pass


async def test_deleting_the_model_stops_its_pods_and_the_router_forgets_it(stack: Stack) -> None:
    name = await stack.apply_example("cpu.yaml", replicas=1)
    await stack.ready(name, 1)
    await chat(stack, name)
    await stack.cluster.delete_model(name)
    await eventually(
        lambda: _async(name not in stack.node.pods and not stack.node.processes_alive()), "no pods"
    )
    await eventually(lambda: _not_served(stack, name), "router forgets the model")
    with pytest.raises(openai.NotFoundError):
        await chat(stack, name)
    assert stack.cluster.child("apps/v1/deployments", name) is None  # garbage-collected with its owner


async def test_switching_to_an_external_backend_stops_the_pods_and_routes_there(stack: Stack) -> None:
    name = await stack.apply_example("cpu.yaml", replicas=1)
    await stack.ready(name, 1)
    await chat(stack, name)
    server, port, _ = await start_fake_backend(text="from the external backend")
    try:
        await stack.cluster.patch_model(name, {"backend": {"address": f"127.0.0.1:{port}"}})
        await eventually(
            lambda: _async(not stack.node.pods_of(name) and not stack.node.processes_alive()),
            "the model's pods stopped",
        )
        assert stack.cluster.child("apps/v1/deployments", name) is None
        assert stack.cluster.child("v1/services", name) is None
        await eventually(lambda: _answers(stack, name, "from the external backend"), "routed to it")
    finally:
        await server.stop(None)


async def test_a_spec_edit_rolls_the_pods_without_a_failed_request(stack: Stack) -> None:
    name = await stack.apply_example("cpu.yaml")
    await stack.ready(name, 2)
    old_pods = {pod.name for pod in stack.node.pods_of(name)}
    async with Load(stack, name).running() as load:
        await asyncio.sleep(1)
        await stack.cluster.patch_model(name, {"backend": {"engine": {"contextSize": 4096}}})

        def rolled() -> bool:
            pods = stack.node.pods_of(name)
            return (
                len(pods) == 2
                and not {pod.name for pod in pods} & old_pods
                and all(pod.ready for pod in pods)
                and len(stack.node.pods) == 2  # the old ones are gone, not just terminating
            )

        await stack.cluster.wait_for(rolled, "both pods replaced", 120)
        await asyncio.sleep(1)
    assert load.failures == [] and load.answered >= 10, (load.answered, load.failures)
    for pod in stack.node.pods_of(name):
        assert "4096" in pod.spec["containers"][0]["args"]


async def test_a_model_at_zero_wakes_on_a_request_and_goes_back_to_zero(stack: Stack) -> None:
    name = await stack.apply_example(
        "scale-to-zero.yaml", scaleDownDelaySeconds=2, autoscaling={"windowSeconds": 1}
    )
    await stack.cluster.wait_for(
        lambda: stack.cluster.model(name).get("status", {}).get("summary") == "ScaledToZero", "at zero"
    )
    assert stack.node.pods_of(name) == []
    await chat(stack, name)  # held while a replica starts and loads, then answered
    scale_patches = [r for r in stack.cluster.server[kmock.resource(LOCALMODELS)] if r.subresource == "scale"]
    assert [r.data["spec"] for r in scale_patches] == [{"replicas": 1}]  # the router asked, once
    await stack.cluster.wait_for(
        lambda: stack.cluster.model(name)["spec"].get("replicas") == 0 and not stack.node.pods_of(name),
        "idle: back to zero",
        60,
    )


async def test_a_killed_backend_is_retried_around_and_restarted(stack: Stack) -> None:
    name = await stack.apply_example("cpu.yaml")
    await stack.ready(name, 2)
    victim = stack.node.pods_of(name)[0]
    seen_ready: set[int] = set()
    seen_degraded: set[tuple[str, str]] = set()

    async def watch_status() -> None:
        while True:
            status = stack.cluster.model(name).get("status", {})
            seen_ready.add(status.get("readyReplicas", 0))
            seen_degraded.update(
                (c["reason"], c.get("message", ""))
                for c in status.get("conditions", [])
                if c["type"] == "Degraded"
            )
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_status())
    async with Load(stack, name).running() as load:
        await asyncio.sleep(1)
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)  # the backend crashes (OOM-killed, say)
        await stack.cluster.wait_for(lambda: victim.restarts == 1 and victim.ready, "restarted and ready", 60)
        await stack.ready(name, 2)
        await asyncio.sleep(1)
    watcher.cancel()
    # Requests in flight on the killed pod fail (never replayed: a request may be what crashed it); at
    # most one per client. Every other request is routed around the dead pod and answered.
    lost = [failure for failure in load.failures if "lost while serving this request" in failure]
    assert lost == load.failures and len(lost) <= load.workers, load.failures
    assert load.answered >= 5, load.answered
    assert 1 in seen_ready  # the status said so while the pod was down
    pod = stack.cluster.child("v1/pods", victim.name)
    assert pod is not None and pod["status"]["containerStatuses"][0]["restartCount"] == 1
    # The operator read why from the pod's status: in a condition while the pod was down, and in an Event.
    crashed = [message for reason, message in seen_degraded if reason == "BackendCrashed"]
    assert crashed and f"pod {victim.name} (restarts: 1" in crashed[0] and "SIGKILL" in crashed[0], (
        seen_degraded
    )
    events = [
        event.raw
        for (resource, _, _), event in stack.cluster.server.objects.items()
        if resource.plural == "events" and event.raw.get("reason") == "BackendCrashed"
    ]
    assert len(events) == 1 and events[0]["type"] == "Warning" and "SIGKILL" in events[0]["message"], events
    degraded = [c for c in stack.cluster.model(name)["status"]["conditions"] if c["type"] == "Degraded"]
    assert degraded[0]["status"] == "False"  # recovered


async def test_an_operator_restarted_mid_reconcile_converges_without_duplicates(stack: Stack) -> None:
    name = await stack.apply_example("cpu.yaml")
    await stack.cluster.wait_for(lambda: stack.cluster.child("apps/v1/deployments", name), "a Deployment")
    await stack.operator.stop(signal.SIGKILL)  # no clean shutdown
    await stack.cluster.patch_model(name, {"backend": {"engine": {"contextSize": 3072}}})  # changed meanwhile
    await stack.operator.start()
    await stack.ready(name, 2, timeout=120)
    await stack.cluster.wait_for(
        lambda: (
            all("3072" in pod.spec["containers"][0]["args"] for pod in stack.node.pods_of(name))
            and len(stack.node.pods) == 2
        ),
        "the change rolled out",
        120,
    )
    creates = [
        w
        for w in stack.cluster.writes("apps/v1/deployments") + stack.cluster.writes("v1/services")
        if w.startswith("POST")
    ]
    assert creates == [f"POST {name}", f"POST {name}"]  # one Deployment, one Service, ever
    await chat(stack, name)


# --- helpers ---


async def _async(value: bool) -> bool:
    return value


async def _not_served(stack: Stack, name: str) -> bool:
    return name not in await served(stack)


async def _has_endpoints(stack: Stack, model: str, count: int) -> bool:
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{stack.router.url}/metrics")).text
    return f'localmodel_router_endpoints{{model="{model}"}} {count}.0' in metrics


async def _answers(stack: Stack, name: str, text: str) -> bool:
    try:
        return await chat(stack, name) == text
    except openai.APIError:
        return False  # the route is still the old one, which has no pods left
