"""POST /v1/messages driven by the official anthropic client, over the real router and SmolLM2."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.support.backend_process import BackendProcess
from tests.support.router import RouterProcess

# Anthropic's SDK no longer has sampling parameters (2.x); the router still takes them, as older
# clients send them, so the tests send temperature 0 for the answers they compare.
GREEDY = {"temperature": 0}
PIRATE = "You are a pirate. Talk like one."
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
    },
}


def client(router: RouterProcess, api_key: str = "none") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.url, api_key=api_key, max_retries=0, timeout=120)


def test_a_message_has_text_a_stop_reason_and_usage(router: RouterProcess) -> None:
    message = client(router).messages.create(
        model="smollm2", max_tokens=40, messages=HELLO, extra_body=GREEDY
    )
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "smollm2"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_max_tokens_reached_is_the_stop_reason(router: RouterProcess) -> None:
    message = client(router).messages.create(
        model="smollm2", max_tokens=3, messages=[{"role": "user", "content": "Tell a long story."}]
    )
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_the_stream_joins_to_the_same_answer(router: RouterProcess) -> None:
    options: dict[str, Any] = {"model": "smollm2", "max_tokens": 40, "messages": HELLO, "extra_body": GREEDY}
    whole = client(router).messages.create(**options)
    with client(router).messages.stream(**options) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3, "the answer should arrive in pieces"
    assert "".join(pieces) == whole.content[0].text == final.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_the_stream_sends_anthropics_event_sequence(router: RouterProcess) -> None:
    body = {"model": "smollm2", "max_tokens": 8, "messages": HELLO, "stream": True}
    raw = httpx.post(f"{router.url}/v1/messages", json=body, timeout=60)
    assert raw.headers["content-type"].startswith("text/event-stream")
    names = [line.removeprefix("event: ") for line in raw.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "[DONE]" not in raw.text  # OpenAI's end marker is not Anthropic's


@pytest.mark.parametrize("system", [PIRATE, [{"type": "text", "text": PIRATE}]], ids=["string", "blocks"])
def test_system_prompt_as_a_string_or_blocks(router: RouterProcess, system: Any) -> None:
    """Either form is the chat path's system message: the same prompt and answer as chat's."""
    question = [{"role": "user", "content": [{"type": "text", "text": "Who are you?"}]}]
    message = client(router).messages.create(
        model="smollm2", max_tokens=16, messages=question, system=system, extra_body=GREEDY
    )
    chat = router.client().chat.completions.create(
        model="smollm2",
        max_tokens=16,
        temperature=0,
        messages=[{"role": "system", "content": PIRATE}, {"role": "user", "content": "Who are you?"}],
    )
    assert chat.usage is not None
    assert message.content[0].text == chat.choices[0].message.content
    assert message.usage.input_tokens == chat.usage.prompt_tokens
    plain = client(router).messages.create(
        model="smollm2", max_tokens=16, messages=question, extra_body=GREEDY
    )
    assert plain.content[0].text != message.content[0].text, "the system prompt should change the answer"


def test_stop_sequences_end_the_answer_before_the_sequence(router: RouterProcess) -> None:
    counting = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    options: dict[str, Any] = {
        "model": "smollm2",
        "max_tokens": 40,
        "messages": counting,
        "extra_body": GREEDY,
    }
    free = client(router).messages.create(**options)
    assert "5" in free.content[0].text, f"the test needs an answer that counts past 5: {free.content}"
    stopped = client(router).messages.create(**options, stop_sequences=["5"])
    text = stopped.content[0].text
    assert "5" not in text and free.content[0].text.startswith(text) and len(text) < len(free.content[0].text)
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "5")  # the backend says which
    assert free.stop_sequence is None
    with client(router).messages.stream(**options, stop_sequences=["7", "5"]) as stream:
        streamed = stream.get_final_message()
    assert (streamed.stop_reason, streamed.stop_sequence) == ("stop_sequence", "5")
    assert streamed.content[0].text == text


def test_count_tokens_counts_what_the_message_reads(router: RouterProcess) -> None:
    for extra in ({}, {"system": "Answer in French."}, {"tools": [WEATHER_TOOL]}):
        ask: dict[str, Any] = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi!"}], **extra}
        counted = client(router).messages.count_tokens(**ask)
        created = client(router).messages.create(**ask, max_tokens=1)
        assert counted.input_tokens == created.usage.input_tokens > 0, extra
    with pytest.raises(anthropic.NotFoundError):
        client(router).messages.count_tokens(model="nope", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(anthropic.BadRequestError):
        client(router).messages.count_tokens(model="smollm2", messages=[])


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_tool_call_is_a_tool_use_block(router: RouterProcess, stream: bool) -> None:
    options: dict[str, Any] = {
        "model": "smollm2",
        "max_tokens": 60,
        "extra_body": GREEDY,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "any"},
    }
    if stream:
        with client(router).messages.stream(**options) as events:
            message = events.get_final_message()
    else:
        message = client(router).messages.create(**options)
    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_")
    assert isinstance(call.input, dict) and isinstance(call.input["city"], str)


def test_a_tool_result_continues_the_conversation(router: RouterProcess) -> None:
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 24 degrees"}],
        },
    ]
    message = client(router).messages.create(
        model="smollm2", max_tokens=40, extra_body=GREEDY, messages=messages, tools=[WEATHER_TOOL]
    )
    assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert message.usage.input_tokens > 0


def test_an_image_block_is_a_400_in_anthropics_shape(router: RouterProcess) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    content = [{"type": "text", "text": "What is this?"}, image]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(router).messages.create(
            model="smollm2", max_tokens=8, messages=[{"role": "user", "content": content}]
        )
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": caught.value.body["error"]["message"]},
    }
    assert "only text" in caught.value.body["error"]["message"] and "'image'" in str(caught.value)


def test_an_unknown_model_is_a_404(router: RouterProcess) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client(router).messages.create(model="claude-nonexistent", max_tokens=8, messages=HELLO)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert "claude-nonexistent" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):  # streamed: refused before the stream starts
        with client(router).messages.stream(model="claude-nonexistent", max_tokens=8, messages=HELLO):
            pass


def test_a_backend_refusal_is_a_400_in_anthropics_shape(router: RouterProcess) -> None:
    # Gemma-3-270M here is a base model without a chat template: its backend refuses chat.
    with pytest.raises(anthropic.BadRequestError, match="chat template") as caught:
        client(router).messages.create(model="gemma3", max_tokens=8, messages=HELLO)
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_invalid_requests_are_400s_in_anthropics_shape(router: RouterProcess) -> None:
    missing_max_tokens = {"model": "smollm2", "messages": HELLO}
    reply = httpx.post(f"{router.url}/v1/messages", json=missing_max_tokens, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["type"] == "error" and "max_tokens" in reply.json()["error"]["message"]
    # The OpenAI routes keep OpenAI's shape.
    reply = httpx.post(f"{router.url}/v1/chat/completions", json={"model": "smollm2"}, timeout=10)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "messages"


def test_prefill_is_refused(router: RouterProcess) -> None:
    messages = [*HELLO, {"role": "assistant", "content": "Hello"}]
    with pytest.raises(anthropic.BadRequestError, match="prefill"):
        client(router).messages.create(model="smollm2", max_tokens=8, messages=messages)


def test_the_key_is_taken_from_x_api_key_or_bearer(chat_backend: BackendProcess) -> None:
    with RouterProcess(["--model", f"smollm2={chat_backend.address}", "--api-key", "s3cret"]) as keyed:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client(keyed, api_key="wrong").messages.create(model="smollm2", max_tokens=4, messages=HELLO)
        assert caught.value.body["error"]["type"] == "authentication_error"
        assert client(keyed, api_key="s3cret").messages.create(model="smollm2", max_tokens=4, messages=HELLO)
        bearer = anthropic.Anthropic(base_url=keyed.url, auth_token="s3cret", max_retries=0)
        assert bearer.messages.create(model="smollm2", max_tokens=4, messages=HELLO).usage.output_tokens
        # x-api-key is this route's: the OpenAI routes still want Authorization.
        openai_path = httpx.get(f"{keyed.url}/v1/models", headers={"x-api-key": "s3cret"}, timeout=10)
        assert openai_path.status_code == 401
