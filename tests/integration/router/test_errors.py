"""Every error leaves the router in OpenAI's shape with the right status."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.integration.router.conftest import GEMMA_MAX_TOKENS
from tests.support.router import RouterProcess

HELLO = [{"role": "user", "content": "hi"}]


def assert_openai_error(
    reply: httpx.Response, status: int, *, param: str | None = None, text: str = ""
) -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert text in error["message"]
    if param is not None:
        assert error["param"] == param


def post(router: RouterProcess, path: str, body: dict[str, object], **kwargs: object) -> httpx.Response:
    return httpx.post(f"{router.url}{path}", json=body, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_unknown_model_is_404_naming_the_known_ones(router: RouterProcess) -> None:
    reply = post(router, "/v1/chat/completions", {"model": "gpt-5", "messages": HELLO})
    assert_openai_error(reply, 404, param="model", text="smollm2")
    assert reply.json()["error"]["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        router.client().chat.completions.create(model="gpt-5", messages=HELLO)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 129}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice.function.name",
        ),
    ],
)
def test_bad_chat_requests_are_400_naming_the_parameter(
    router: RouterProcess, body: dict[str, object], param: str
) -> None:
    reply = post(
        router, "/v1/chat/completions", {"model": "smollm2", "messages": HELLO, "max_tokens": 4, **body}
    )
    assert_openai_error(reply, 400, param=param)


def test_max_tokens_above_the_models_cap_is_400(router: RouterProcess) -> None:
    body = {"model": "gemma3", "prompt": "Hi", "max_tokens": GEMMA_MAX_TOKENS + 1}
    assert_openai_error(
        post(router, "/v1/completions", body), 400, param="max_tokens", text=str(GEMMA_MAX_TOKENS)
    )


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"model": "smollm2", "prompt": "Hi", "suffix": "!"}, "suffix"),
        ("/v1/completions", {"model": "smollm2", "prompt": [1, 2, 3]}, "prompt"),
        ("/v1/embeddings", {"model": "smollm2-embed", "input": "hi", "dimensions": 8}, "dimensions"),
        ("/v1/embeddings", {"model": "smollm2", "input": "hi"}, None),  # a model loaded without embeddings
        ("/v1/tokenize", {"model": "smollm2"}, None),
    ],
)
def test_other_bad_requests_are_400(
    router: RouterProcess, path: str, body: dict[str, object], param: str | None
) -> None:
    assert_openai_error(post(router, path, body), 400, param=param)


def test_malformed_json_is_400(router: RouterProcess) -> None:
    reply = httpx.post(
        f"{router.url}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert_openai_error(reply, 400)


def test_body_over_the_limit_is_413(router: RouterProcess) -> None:
    huge = {"model": "smollm2", "messages": [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]}
    assert_openai_error(post(router, "/v1/chat/completions", huge), 413)


def test_rerank_on_a_backend_without_it_is_501(router: RouterProcess) -> None:
    reply = post(router, "/v1/rerank", {"model": "smollm2", "query": "q", "documents": ["a", "b"]})
    assert_openai_error(reply, 501, text="rerank")


def test_unreachable_replica_is_skipped(router: RouterProcess) -> None:
    client = router.client()
    for _ in range(3):  # whichever replica the balancer picks first, the answer comes
        answer = client.chat.completions.create(model="flaky", messages=HELLO, max_tokens=4, temperature=0)
        assert answer.choices[0].message.content is not None
    metrics = httpx.get(f"{router.url}/metrics").text
    assert 'localmodel_router_retries_total{model="flaky"}' in metrics


def test_no_reachable_backend_is_502_with_retry_after(router: RouterProcess) -> None:
    reply = post(router, "/v1/chat/completions", {"model": "down", "messages": HELLO})
    assert_openai_error(reply, 502)
    assert reply.headers["retry-after"] == "1"
    stream = post(router, "/v1/chat/completions", {"model": "down", "messages": HELLO, "stream": True})
    assert_openai_error(stream, 502)


def test_unknown_route_is_404_in_openai_shape(router: RouterProcess) -> None:
    reply = httpx.get(f"{router.url}/v1/nothing-here")
    assert_openai_error(reply, 404, text="GET /v1/nothing-here is not served here. The API: ")
    assert "/v1/chat/completions" in reply.json()["error"]["message"]


def test_health_readiness_and_metrics(router: RouterProcess) -> None:
    assert httpx.get(f"{router.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{router.url}/readyz")
    assert ready.status_code == 200 and "smollm2" in ready.json()["models"]
    router.client().chat.completions.create(model="smollm2", messages=HELLO, max_tokens=3)
    text = httpx.get(f"{router.url}/metrics").text
    for name in (
        'localmodel_router_requests_total{endpoint="/v1/chat/completions",model="smollm2",status="200"}',
        "localmodel_router_request_duration_seconds_bucket",
        'localmodel_router_generated_tokens_total{model="smollm2"}',
        "localmodel_router_in_flight_requests",
        'localmodel_router_requests_total{endpoint="/v1/chat/completions",model="_unknown",status="404"}',
    ):
        assert name in text, name


def test_api_keys(chat_backend) -> None:  # type: ignore[no-untyped-def]
    with RouterProcess(
        ["--model", f"smollm2={chat_backend.address}", "--api-key", "s3cret", "--api-key", "other"]
    ) as keyed:
        for key in ("wrong", ""):
            reply = httpx.get(
                f"{keyed.url}/v1/models", headers={"Authorization": f"Bearer {key}"} if key else {}
            )
            assert_openai_error(reply, 401)
            assert reply.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            keyed.client("wrong").models.list()
        assert [m.id for m in keyed.client("s3cret").models.list()] == ["smollm2"]
        assert [m.id for m in keyed.client("other").models.list()] == ["smollm2"]
        assert httpx.get(f"{keyed.url}/healthz").status_code == 200  # probes need no key
        # Readiness answers probes without a key, but names the models only to a caller with one.
        assert httpx.get(f"{keyed.url}/readyz").json() == {"status": "ready"}
        with_key = {"Authorization": "Bearer s3cret"}
        assert httpx.get(f"{keyed.url}/readyz", headers=with_key).json()["models"] == ["smollm2"]
        # The API's description is behind the key; the browsable pages are off.
        assert httpx.get(f"{keyed.url}/openapi.json").status_code == 401
        document = httpx.get(f"{keyed.url}/openapi.json", headers=with_key).json()
        assert "/v1/chat/completions" in document["paths"]
        assert httpx.get(f"{keyed.url}/docs").status_code == 404
        assert httpx.get(f"{keyed.url}/redoc").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        # Token ids outside the vocabulary: llama.cpp would abort the backend on them.
        ("/v1/embeddings", {"model": "smollm2-embed", "input": [-1]}, "input"),
        ("/v1/embeddings", {"model": "smollm2-embed", "input": [49152]}, "input"),
        ("/v1/embeddings", {"model": "smollm2-embed", "input": [[28120], [1_000_000_000]]}, "input"),
        ("/v1/embeddings", {"model": "smollm2-embed", "input": [2**40]}, "input"),
        # Integers the backend contract cannot carry (int32).
        ("/v1/completions", {"model": "smollm2", "prompt": "Hi", "max_tokens": 2**31}, "max_tokens"),
        ("/v1/completions", {"model": "smollm2", "prompt": "Hi", "max_tokens": 1e20}, "max_tokens"),
        ("/v1/completions", {"model": "smollm2", "prompt": "Hi", "seed": 2**40}, "seed"),
        ("/v1/completions", {"model": "smollm2", "prompt": "Hi", "seed": 2**63}, "seed"),
        ("/v1/completions", {"model": "smollm2", "prompt": [2**40]}, "prompt"),
        ("/v1/chat/completions", {"model": "smollm2", "messages": HELLO, "max_tokens": 2**31}, "max_tokens"),
    ],
)
def test_out_of_range_numbers_are_400_and_the_backend_keeps_serving(
    router: RouterProcess, path: str, body: dict[str, object], param: str
) -> None:
    assert_openai_error(post(router, path, body), 400, param=param)
    still = router.client().embeddings.create(model="smollm2-embed", input="still serving")
    assert len(still.data[0].embedding) == 576


def test_the_openapi_document_says_400_where_the_router_answers_400(router: RouterProcess) -> None:
    document = httpx.get(f"{router.url}/openapi.json", timeout=10).json()
    statuses = {
        (path, method): set(operation["responses"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert not [where for where, codes in statuses.items() if "422" in codes]
    assert "400" in statuses[("/v1/chat/completions", "post")]
    assert "OpenAIError" in document["components"]["schemas"]
    reply = post(router, "/v1/chat/completions", {"model": "smollm2", "messages": "not a list"})
    assert_openai_error(reply, 400, param="messages")
