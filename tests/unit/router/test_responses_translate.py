from __future__ import annotations

import json
from typing import Any

import openai.types.responses as sdk
import pytest

from localmodel_router import responses_translate, translate
from localmodel_router.discovery import ModelRoute
from localmodel_router.errors import BadRequestError
from localmodel_router.protocol.responses import CreateResponseRequest

ROUTE = ModelRoute(name="m", endpoints=("h:1",))
CAPPED = ModelRoute(name="m", endpoints=("h:1",), max_tokens=100)
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}


def responses(**fields: Any) -> CreateResponseRequest:
    return CreateResponseRequest.model_validate({"model": "m", "input": "hi", **fields})


def backend_request(request: CreateResponseRequest, route: ModelRoute = ROUTE) -> Any:
    return translate.chat_options(responses_translate.chat_request(request), route)


def test_a_string_input_is_a_user_message_after_the_instructions() -> None:
    options, tools = backend_request(responses(instructions="be brief", max_output_tokens=9, temperature=0))
    assert [(m.role, m.content) for m in options.messages] == [("system", "be brief"), ("user", "hi")]
    assert (options.tokens, options.temperature, options.top_p) == (9, 0.0, 1.0) and tools is None


def test_message_items_function_calls_and_their_outputs() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    items = [
        {"role": "developer", "content": "be brief"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "b", "annotations": []}]},
        call,
        {**call, "call_id": "c2"},  # made together with c1: one assistant turn
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]
    messages = backend_request(responses(input=items))[0].messages
    assert [(m.role, m.content) for m in messages] == [
        ("system", "be brief"),
        ("user", "a"),
        ("assistant", "b"),
        ("assistant", ""),
        ("tool", "42"),
    ]
    assert [c["id"] for c in json.loads(messages[3].tool_calls)] == ["c1", "c2"]
    assert messages[4].tool_call_id == "c1"


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "not stored"),
        ({"conversation": "conv_1"}, "conversation", "not stored"),
        ({"input": []}, "input", "empty"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
            "input[0].content[0]",
            "only text",
        ),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "must be one of"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type", "'reasoning'"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "not stored"),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
            "required",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search'"),
        ({"tools": [{**TOOL, "name": "get weather"}]}, "tools[0].name", "not a valid function name"),
        ({"tools": [TOOL], "tool_choice": {"type": "file_search"}}, "tool_choice", "'file_search'"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", "required"),
    ],
)
def test_what_cannot_be_served_is_a_400_naming_it(fields: dict[str, Any], param: str, says: str) -> None:
    with pytest.raises(BadRequestError, match=says) as caught:
        responses_translate.chat_request(responses(**fields))
    assert caught.value.param == param


def test_chat_path_errors_use_the_responses_names() -> None:
    cases = [
        (responses(max_output_tokens=101), CAPPED, "max_output_tokens"),
        (
            responses(tools=[TOOL], tool_choice={"type": "function", "name": "nope"}),
            ROUTE,
            "tool_choice.name",
        ),
        (responses(tools=[{**TOOL, "parameters": {"type": "string"}}]), ROUTE, "tools[0].parameters"),
    ]
    for request, route, param in cases:
        with pytest.raises(BadRequestError) as caught:
            backend_request(request, route)
        error = responses_translate.renamed(caught.value)
        assert error.param == param and error.message.startswith(param)


def test_function_tools_and_a_forced_choice_constrain_the_answer() -> None:
    options, tool_use = backend_request(
        responses(tools=[TOOL], tool_choice={"type": "function", "name": "get_weather"})
    )
    assert tool_use is not None and options.grammar
    assert "get_weather" in options.messages[0].content
    assert backend_request(responses(tools=[TOOL], tool_choice="none"))[1] is None


def test_text_formats_become_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    as_json = responses_translate.chat_request(responses(text={"format": {"type": "json_object"}}))
    assert as_json.response_format is not None and as_json.response_format.type == "json_object"
    shaped = responses_translate.chat_request(
        responses(text={"format": {"type": "json_schema", "name": "x", "schema": schema}})
    )
    assert shaped.response_format is not None and shaped.response_format.json_schema is not None
    assert shaped.response_format.json_schema.schema_ == schema
    assert (
        responses_translate.chat_request(responses(text={"format": {"type": "text"}})).response_format is None
    )


def test_a_tool_call_answer_is_a_function_call_item() -> None:
    request = responses(tools=[TOOL], tool_choice="required", metadata={"k": "v"})
    tool_use = backend_request(request)[1]
    items = responses_translate.output(
        '{"name": "get_weather", "arguments": {"city": "Paris"}}', "stop", tool_use
    )
    built = responses_translate.response_object(request, "resp_1", 1, items, (10, 5))
    parsed = sdk.Response.model_validate(built.model_dump(mode="json"))
    call = parsed.output[0]
    assert isinstance(call, sdk.ResponseFunctionToolCall)
    assert (call.name, json.loads(call.arguments), call.call_id.startswith("call_")) == (
        "get_weather",
        {"city": "Paris"},
        True,
    )
    assert (
        parsed.status == "completed"
        and parsed.metadata == {"k": "v"}
        and parsed.tools[0].name == "get_weather"
    )


def test_an_answer_cut_at_the_limit_is_incomplete() -> None:
    request = responses(max_output_tokens=3)
    built = responses_translate.response_object(
        request, "resp_1", 1, responses_translate.output("Hello the", "length", None), (7, 3)
    )
    parsed = sdk.Response.model_validate(built.model_dump(mode="json"))
    assert parsed.status == "incomplete" and parsed.incomplete_details is not None
    assert parsed.incomplete_details.reason == "max_output_tokens"
    assert parsed.output_text == "Hello the" and parsed.max_output_tokens == 3
    assert parsed.usage is not None and (parsed.usage.input_tokens, parsed.usage.total_tokens) == (7, 10)
    assert parsed.usage.input_tokens_details.cached_tokens == 0


def test_the_echoed_text_format_keeps_its_schema_field() -> None:
    text = {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}
    built = responses_translate.response_object(responses(text=text), "resp_1", 1, [])
    assert built.model_dump(mode="json")["text"]["format"]["schema"] == {"type": "object"}
    assert built.status == "in_progress" and built.usage is None and built.store is False
