from __future__ import annotations

import json
from typing import Any

import pytest

from localmodel.wire import backend_pb2
from localmodel_router import translate, translate_messages
from localmodel_router.discovery import ModelRoute
from localmodel_router.errors import BadRequestError
from localmodel_router.protocol.messages import (
    CountTokensRequest,
    MessagesRequest,
    StopDetails,
    TextBlock,
    ToolUseBlock,
)

ROUTE = ModelRoute(name="m", endpoints=("h:1",))
TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def request(**fields: Any) -> MessagesRequest:
    return MessagesRequest.model_validate(
        {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def roles_and_contents(options: backend_pb2.PredictOptions) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in options.messages]


def test_sampling_fields_become_the_chat_paths_options() -> None:
    given = request(temperature=0.2, top_p=0.5, top_k=40, stop_sequences=["END", "\n\n"], metadata={"u": 1})
    options, tool_use = translate_messages.messages_options(given, ROUTE)
    assert (round(options.temperature, 3), options.top_p, options.top_k, options.tokens) == (0.2, 0.5, 40, 16)
    assert list(options.stop_prompts) == ["END", "\n\n"] and tool_use is None
    assert options.use_tokenizer_template and roles_and_contents(options) == [("user", "hi")]


def test_anthropics_defaults_are_the_chat_defaults() -> None:
    options, _ = translate_messages.messages_options(request(), ROUTE)
    assert (options.temperature, options.top_p, options.top_k) == (1.0, 1.0, 0)


@pytest.mark.parametrize(
    "system", ["Be brief.", [{"type": "text", "text": "Be"}, {"type": "text", "text": "brief."}]]
)
def test_system_as_a_string_or_text_blocks_is_the_first_message(system: Any) -> None:
    options, _ = translate_messages.messages_options(request(system=system), ROUTE)
    assert options.messages[0].role == "system" and options.messages[0].content.split() == ["Be", "brief."]


def test_text_blocks_join_and_turns_keep_their_roles() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ]
    options, _ = translate_messages.messages_options(request(messages=messages), ROUTE)
    assert roles_and_contents(options) == [("user", "a\nb"), ("assistant", "c"), ("user", "d")]


def test_tool_use_and_tool_result_become_tool_calls_and_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "Sunny"}],
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "no such city",
                    "is_error": True,
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    chat = translate_messages.chat_request(request(messages=messages, tools=[TOOL]))
    assistant = chat.messages[1]
    assert assistant.role == "assistant" and assistant.content == "Let me look."
    assert assistant.tool_calls is not None and assistant.tool_calls[0].id == "toolu_1"
    assert json.loads(assistant.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert [(m.role, m.tool_call_id, m.content) for m in chat.messages[2:]] == [
        ("tool", "toolu_1", "Sunny"),
        ("tool", "toolu_2", "Error: no such city"),
        ("user", None, "And tomorrow?"),
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_maps_to_openais(choice: dict[str, str], expected: Any) -> None:
    chat = translate_messages.chat_request(request(tools=[TOOL], tool_choice=choice))
    got = chat.tool_choice if isinstance(chat.tool_choice, str) else chat.tool_choice.model_dump()  # type: ignore[union-attr]
    assert got == expected
    assert chat.tools is not None and chat.tools[0].function.parameters == TOOL["input_schema"]


def test_tools_constrain_the_answer_with_the_chat_grammar() -> None:
    options, tool_use = translate_messages.messages_options(
        request(tools=[TOOL], tool_choice={"type": "any"}), ROUTE
    )
    assert tool_use is not None and options.grammar and options.messages[0].role == "system"


def test_structured_output_is_a_json_schema_grammar() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    options, _ = translate_messages.messages_options(
        request(output_config={"format": {"type": "json_schema", "schema": schema}}), ROUTE
    )
    assert "ok" in options.grammar


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages[0].content[0]: only text content is supported (with tool_use and tool_result "
            "blocks for tools), got 'image'",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "document"}]}]}, "got 'document'"),
        ({"system": [{"type": "image"}]}, "system[0]: only text is supported here, got 'image'"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0]: only text",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}
                ]
            },
            "'tool_use' blocks belong in assistant messages",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel"}]},
            "prefill",
        ),
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "server tool 'web_search_20250305'",
        ),
        ({"tools": [TOOL], "tool_choice": {"type": "tool"}}, "tool_choice.name: required"),
    ],
    ids=[
        "image",
        "document",
        "system-image",
        "result-image",
        "misplaced",
        "prefill",
        "server-tool",
        "no-name",
    ],
)
def test_what_has_no_counterpart_is_a_400_saying_so(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        translate_messages.messages_options(request(**fields), ROUTE)
    assert says in caught.value.message


def test_a_token_cap_is_enforced_as_for_chat() -> None:
    with pytest.raises(BadRequestError, match="max_tokens: at most 8"):
        translate_messages.messages_options(request(), ModelRoute(name="m", endpoints=("h:1",), max_tokens=8))


def test_answers_become_blocks_and_stop_reasons() -> None:
    text = translate_messages.answer_blocks("Hello", None)
    assert text == [TextBlock(text="Hello")]
    assert translate_messages.stop(backend_pb2.Reply(finish_reason="stop"), text) == StopDetails(
        stop_reason="end_turn"
    )
    assert translate_messages.stop(backend_pb2.Reply(finish_reason="length"), text) == StopDetails(
        stop_reason="max_tokens"
    )
    by_stop_sequence = backend_pb2.Reply(finish_reason="stop", stop_sequence="END")
    assert translate_messages.stop(by_stop_sequence, text) == StopDetails(
        stop_reason="stop_sequence", stop_sequence="END"
    )

    tool_use = translate.ToolUse([{"type": "function", "function": {"name": "get_weather"}}])
    call = translate_messages.answer_blocks(
        '{"name": "get_weather", "arguments": {"city": "Paris"}}', tool_use
    )
    assert len(call) == 1 and isinstance(call[0], ToolUseBlock) and call[0].id.startswith("toolu_")
    assert (call[0].name, call[0].input) == ("get_weather", {"city": "Paris"})
    assert translate_messages.stop(backend_pb2.Reply(finish_reason="stop"), call).stop_reason == "tool_use"
    assert translate_messages.answer_blocks("It is sunny.", tool_use) == [TextBlock(text="It is sunny.")]


def test_a_token_count_renders_the_prompt_a_message_would() -> None:
    """count_tokens sends the backend the prompt of the same Messages request: its messages, system
    prompt and tools' system prompt; no limit, sampling or stop sequences of its own."""
    prompt = {"system": "Be brief.", "tools": [TOOL], "tool_choice": {"type": "any"}}
    message, _ = translate_messages.messages_options(request(**prompt, stop_sequences=["END"]), ROUTE)
    counted = translate_messages.count_options(
        CountTokensRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], **prompt}
        ),
        ROUTE,
    )
    assert counted.use_tokenizer_template and list(counted.messages) == list(message.messages)
    assert (counted.tokens, list(counted.stop_prompts)) == (0, [])


def test_a_token_count_refuses_what_a_message_refuses() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    with pytest.raises(BadRequestError, match="only text content"):
        translate_messages.count_options(CountTokensRequest.model_validate(body), ROUTE)
