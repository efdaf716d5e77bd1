"""POST /v1/responses driven by the official openai client, over the real SmolLM2 backend."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.router import RouterProcess

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
    },
    "strict": True,
}


def test_a_string_input_gets_a_completed_response(router: RouterProcess) -> None:
    response = router.client().responses.create(
        model="smollm2",
        input="Say hello in one short sentence.",
        max_output_tokens=40,
        temperature=0,  # greedy: a sampled answer (default temperature 1) may run past 40 tokens
        metadata={"k": "v"},
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.output_text
    assert response.output[0].type == "message" and response.output[0].id.startswith("msg_")
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.metadata == {"k": "v"} and response.model == "smollm2"


def test_instructions_and_message_items(router: RouterProcess) -> None:
    response = router.client().responses.create(
        model="smollm2",
        instructions="You answer with one word.",
        input=[
            {"role": "user", "content": "What colour is the sky?"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Blue."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And grass?"}]},
        ],
        max_output_tokens=20,
        temperature=0,
    )
    assert response.status == "completed" and response.output_text
    assert response.instructions == "You answer with one word."


def test_the_token_limit_leaves_the_response_incomplete(router: RouterProcess) -> None:
    response = router.client().responses.create(
        model="smollm2", input="Write a long story about a dragon.", max_output_tokens=3
    )
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 3 and response.output_text


def test_streamed_deltas_join_to_the_answer(router: RouterProcess) -> None:
    client = router.client()
    options = {
        "model": "smollm2",
        "input": "Say hello in one short sentence.",
        "temperature": 0,
        "max_output_tokens": 40,
    }
    text = client.responses.create(**options).output_text

    events = list(client.responses.create(**options, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == text and len(deltas) > 3, "the answer should arrive in pieces"
    assert events[-1].response.output_text == text and events[-1].response.usage.output_tokens > 0

    # The SDK's stream helper accumulates the same events into its final response.
    with client.responses.stream(**options) as stream:
        final = stream.get_final_response()
    assert final.output_text == text


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_forced_function_tool_is_called(router: RouterProcess, stream: bool) -> None:
    options = {
        "model": "smollm2",
        "input": "What is the weather in Paris?",
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 60,
        "temperature": 0,
    }
    client = router.client()
    if stream:
        with client.responses.stream(**options) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(**options)
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    assert response.status == "completed" and response.tools[0].name == "get_weather"


def test_what_is_not_served_is_a_400(router: RouterProcess) -> None:
    client = router.client()
    with pytest.raises(openai.BadRequestError, match="web_search") as caught:
        client.responses.create(model="smollm2", input="hi", tools=[{"type": "web_search"}])
    assert caught.value.param == "tools[0].type"
    with pytest.raises(openai.BadRequestError, match="not stored") as caught:
        client.responses.create(model="smollm2", input="hi", previous_response_id="resp_123")
    assert caught.value.param == "previous_response_id"
    image = {"type": "input_image", "image_url": "https://example.com/cat.png"}
    with pytest.raises(openai.BadRequestError, match="only text"):
        client.responses.create(model="smollm2", input=[{"role": "user", "content": [image]}])
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="hi")
