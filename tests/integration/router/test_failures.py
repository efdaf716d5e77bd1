"""Backend failures, overload and disconnects, against the zero-cost fake backend (in a thread of its own)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import openai
import pytest

from tests.support.fake_backend import FakeBackend, start_fake_backend
from tests.support.router import RouterProcess

HELLO = [{"role": "user", "content": "hi"}]


class FakeBackendThread:
    """The fake's asyncio server on a loop in a background thread, so the tests can stay synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        server, port, fake = asyncio.run_coroutine_threadsafe(start_fake_backend(), self.loop).result(10)
        self.server, self.fake = server, fake
        self.address = f"127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeBackendThread]:
    running = FakeBackendThread()
    yield running
    running.stop()


@pytest.fixture
def fake(backend: FakeBackendThread) -> Iterator[FakeBackend]:
    """The fake with its knobs reset after each test."""
    yield backend.fake
    backend.fake.fail_with = None
    backend.fake.die_after_pieces = None
    backend.fake.delay_per_piece = 0.0


@pytest.fixture(scope="module")
def router(backend: FakeBackendThread) -> Iterator[RouterProcess]:
    limits = {
        "LOCALMODEL_ROUTER_MAX_IN_FLIGHT_PER_MODEL": "1",
        "LOCALMODEL_ROUTER_MAX_WAITING_PER_MODEL": "1",
        "LOCALMODEL_ROUTER_QUEUE_TIMEOUT_SECONDS": "2",
        "LOCALMODEL_ROUTER_MAX_INPUTS_PER_REQUEST": "8",
    }
    with RouterProcess(["--model", f"fake={backend.address}"], env=limits) as running:
        yield running


def test_backend_dying_mid_stream_ends_the_stream_with_an_error(
    router: RouterProcess, fake: FakeBackend
) -> None:
    fake.die_after_pieces = 2
    stream = router.client().chat.completions.create(model="fake", messages=HELLO, stream=True)
    received = []
    with pytest.raises(openai.APIError, match="model 'fake'"):
        for chunk in stream:  # never hangs: an error event, then the end
            received.append(chunk)
    assert [c.choices[0].delta.content for c in received[1:]] == ["Hello", " from"]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.FAILED_PRECONDITION, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 502),
    ],
)
def test_backend_status_codes_map_to_http(
    router: RouterProcess, fake: FakeBackend, code: grpc.StatusCode, status: int
) -> None:
    fake.fail_with = code
    for stream in (False, True):
        reply = httpx.post(
            f"{router.url}/v1/chat/completions", json={"model": "fake", "messages": HELLO, "stream": stream}
        )
        assert reply.status_code == status, reply.text
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
        if status in (429, 503):
            assert int(reply.headers["retry-after"]) >= 1


def test_overload_answers_429_then_503_with_retry_after(router: RouterProcess, fake: FakeBackend) -> None:
    fake.delay_per_piece = 1.2  # each request holds the model's only place for about 6 s
    body = {"model": "fake", "messages": HELLO}

    def post() -> httpx.Response:
        return httpx.post(f"{router.url}/v1/chat/completions", json=body, timeout=30)

    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(post)
        time.sleep(0.5)
        waiting = pool.submit(post)  # waits for the place, gives up after the 2 s queue timeout: 503
        time.sleep(0.5)
        refused = post()  # the queue (one place) is full: 429 at once
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        timed_out = waiting.result()
        assert timed_out.status_code == 503 and int(timed_out.headers["retry-after"]) >= 1
        assert running.result().status_code == 200


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
def test_client_disconnect_cancels_the_backend_call(
    router: RouterProcess, fake: FakeBackend, stream: bool
) -> None:
    fake.delay_per_piece = 1.0  # slower than the client's read timeout
    counter = "cancelled_streams" if stream else "cancelled_predicts"
    before = getattr(fake, counter)
    body = {"model": "fake", "messages": HELLO, "stream": stream}
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(10, read=0.5)) as client:
        with client.stream("POST", f"{router.url}/v1/chat/completions", json=body) as reply:
            for _ in reply.iter_lines():
                pass
    deadline = time.monotonic() + 5
    while getattr(fake, counter) == before:
        assert time.monotonic() < deadline, "the backend call was not cancelled"
        time.sleep(0.05)
    fake.delay_per_piece = 0.0
    assert router.client().chat.completions.create(model="fake", messages=HELLO).choices[0].message.content


def test_rerank_orders_documents_by_the_backends_scores(router: RouterProcess, fake: FakeBackend) -> None:
    body = {
        "model": "fake",
        "query": "red apple",
        "documents": ["blue sky", "red apple pie", "apple"],
        "top_n": 2,
    }
    reply = httpx.post(f"{router.url}/v1/rerank", json=body)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["index"] for r in results] == [1, 2]  # the fake scores by words shared with the query
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert results[0]["document"] == {"text": "red apple pie"}
    assert fake.calls["Rerank"] >= 1


@pytest.mark.usefixtures("fake")
def test_a_request_of_several_prompts_does_not_overflow_its_models_queue(router: RouterProcess) -> None:
    # One place in flight and one waiting: five prompts sent at once would refuse their own request.
    body = {"model": "fake", "prompt": ["Hi"] * 5, "max_tokens": 1}
    reply = httpx.post(f"{router.url}/v1/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert [choice["index"] for choice in reply.json()["choices"]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": ["Hi"] * 9}, "prompt"),
        ("/v1/completions", {"prompt": ["Hi"] * 9, "stream": True}, "prompt"),
        ("/v1/embeddings", {"input": ["Hi"] * 9}, "input"),
        ("/v1/completions", {"prompt": []}, "prompt"),
    ],
)
@pytest.mark.usefixtures("fake")
def test_prompt_and_input_lists_are_bounded(
    router: RouterProcess, path: str, body: dict[str, object], param: str
) -> None:
    reply = httpx.post(f"{router.url}{path}", json={"model": "fake", **body}, timeout=30)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
