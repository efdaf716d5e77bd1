from __future__ import annotations

import json
from typing import Any

import pytest

from localmodel.wire import backend_pb2
from localmodel_router import translate
from localmodel_router.discovery import ModelRoute
from localmodel_router.errors import BackendError, BadRequestError
from localmodel_router.protocol.chat import ChatCompletionRequest
from localmodel_router.protocol.completions import CompletionRequest

ROUTE = ModelRoute(name="m", endpoints=("h:1",))
CAPPED = ModelRoute(name="m", endpoints=("h:1",), max_tokens=100)
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_openai_defaults_are_sent_explicitly() -> None:
    options, tools = translate.chat_options(chat(), ROUTE)
    assert (options.temperature, options.top_p, options.seed, options.tokens) == (1.0, 1.0, -1, 0)
    assert options.use_tokenizer_template and tools is None and options.grammar == ""
    assert [(m.role, m.content) for m in options.messages] == [("user", "hi")]


def test_sampling_fields_are_mapped() -> None:
    request = chat(
        temperature=0, top_p=0.5, seed=7, stop="END", max_completion_tokens=9, presence_penalty=1.5
    )
    options, _ = translate.chat_options(request, ROUTE)
    assert (options.temperature, options.top_p, options.seed, options.tokens) == (0.0, 0.5, 7, 9)
    assert list(options.stop_prompts) == ["END"] and options.presence_penalty == 1.5


def test_the_models_cap_bounds_and_defaults_max_tokens() -> None:
    assert translate.chat_options(chat(), CAPPED)[0].tokens == 100
    assert translate.chat_options(chat(max_tokens=50), CAPPED)[0].tokens == 50
    with pytest.raises(BadRequestError, match="at most 100") as caught:
        translate.chat_options(chat(max_tokens=101), CAPPED)
    assert caught.value.param == "max_tokens"


def test_messages_text_parts_roles_and_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    request = chat(
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ]
    )
    messages = translate.chat_options(request, ROUTE)[0].messages
    assert [(m.role, m.content) for m in messages] == [
        ("system", "be brief"),
        ("user", "a\nb"),
        ("assistant", ""),
        ("tool", "42"),
    ]
    assert json.loads(messages[2].tool_calls) == [call] and messages[3].tool_call_id == "c1"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
        ({"tools": [TOOL], "response_format": {"type": "json_object"}}, "response_format"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
    ],
)
def test_requests_this_router_cannot_serve_name_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        translate.chat_options(chat(**fields), ROUTE)
    assert caught.value.param == param


def test_tools_add_a_system_prompt_and_a_grammar() -> None:
    options, tools = translate.chat_options(chat(tools=[TOOL], tool_choice="required"), ROUTE)
    assert tools is not None and options.grammar
    assert options.messages[0].role == "system" and "get_weather" in options.messages[0].content
    assert translate.chat_options(chat(tools=[TOOL], tool_choice="none"), ROUTE)[1] is None


def test_tool_call_parsing() -> None:
    tools = translate.ToolUse([TOOL])
    calls = translate.tool_calls('{"name": "get_weather", "arguments": {"city": "Paris"}}', tools)
    assert calls is not None and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"} and calls[0].id.startswith("call_")
    assert translate.tool_calls("It is sunny.", tools) is None
    assert translate.tool_calls('{"name": "other", "arguments": {}}', tools) is None


def test_response_formats_become_grammars() -> None:
    json_mode, _ = translate.chat_options(chat(response_format={"type": "json_object"}), ROUTE)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    with_schema, _ = translate.chat_options(
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}), ROUTE
    )
    assert "root ::= object" in json_mode.grammar
    assert '"\\"a\\""' in with_schema.grammar


def test_completion_prompts() -> None:
    def request(**fields: Any) -> CompletionRequest:
        return CompletionRequest.model_validate({"model": "m", "prompt": "p", **fields})

    assert translate.completion_prompts(request()) == ["p"]
    assert translate.completion_prompts(request(prompt=["a", "b"])) == ["a", "b"]
    assert translate.completion_options(request(), "p", ROUTE).tokens == 16  # OpenAI's default
    capped = ModelRoute(name="m", endpoints=("a:1",), max_tokens=8)
    assert translate.completion_options(request(), "p", capped).tokens == 8  # the default, within the cap
    with pytest.raises(BadRequestError, match="at most 8 tokens"):
        translate.completion_options(request(max_tokens=16), "p", capped)  # one asked for: refused
    for fields, param in (
        ({"suffix": "x"}, "suffix"),
        ({"prompt": [1, 2]}, "prompt"),
        ({"n": 3, "best_of": 4}, "best_of"),
    ):
        with pytest.raises(BadRequestError) as caught:
            translate.completion_prompts(request(**fields))
        assert caught.value.param == param


def test_n_answers_get_seeds_of_their_own() -> None:
    seeded = backend_pb2.PredictOptions(prompt="p", seed=7)
    assert [o.seed for o in translate.per_choice(seeded, 3)] == [7, 8, 9]
    assert [o.prompt for o in translate.per_choice(seeded, 3)] == ["p"] * 3
    unseeded = backend_pb2.PredictOptions(seed=-1)
    assert [o.seed for o in translate.per_choice(unseeded, 2)] == [-1, -1]  # each random
    assert translate.per_choice(backend_pb2.PredictOptions(seed=2**31 - 1), 2)[1].seed == 0  # stays int32


def test_a_stream_of_interleaved_answers_joins_into_one_reply_each() -> None:
    def reply(index: int, text: str, **fields: object) -> backend_pb2.Reply:
        return backend_pb2.Reply(index=index, message=text.encode(), **fields)

    first = json.dumps([{"token": "He", "logprob": -0.5, "bytes": [72, 101], "top_logprobs": []}]).encode()
    more = json.dumps([{"token": "y", "logprob": -1.0, "bytes": [121], "top_logprobs": []}]).encode()
    replies = [
        reply(0, "He", logprobs=first, prompt_logprobs=b"[]"),
        reply(1, "No", tokens=1, prompt_tokens=5, finish_reason="stop", stop_sequence="."),
        reply(0, "y", logprobs=more, tokens=2, prompt_tokens=5, finish_reason="length"),
    ]
    zero, one = translate.join_answers(replies, 2)
    assert (zero.message, zero.tokens, zero.prompt_tokens, zero.finish_reason) == (b"Hey", 2, 5, "length")
    assert [entry.token for entry in translate.token_logprobs(zero)] == ["He", "y"]
    assert zero.prompt_logprobs == b"[]"
    assert (one.message, one.logprobs, one.stop_sequence) == (b"No", b"", ".")


def test_a_backend_that_ignores_n_is_a_502_that_says_so() -> None:
    with pytest.raises(BackendError, match="gave 1 of 3 answers: it does not implement n"):
        translate.join_answers([backend_pb2.Reply(message=b"only one", finish_reason="stop")], 3)
    with pytest.raises(BackendError, match="answer 4 of a request for 2"):
        translate.join_answers([backend_pb2.Reply(index=4)], 2)


def test_embedding_inputs() -> None:
    assert [o.embeddings for o in translate.embedding_requests(["a", "b"])] == ["a", "b"]
    assert list(translate.embedding_requests([1, 2, 3])[0].embedding_tokens) == [1, 2, 3]
    assert [list(o.embedding_tokens) for o in translate.embedding_requests([[1], [2, 3]])] == [[1], [2, 3]]
    for bad in ([], [""]):
        with pytest.raises(BadRequestError):
            translate.embedding_requests(bad)
