"""Grammars must parse in llama.cpp itself, accept exactly what they should, and constrain a real model."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import llama_cpp
import pytest
from llama_cpp.llama_grammar import LlamaGrammar

from localmodel_llamacpp.engine import open_llama
from localmodel_router import grammar
from tests.support.models import require_model

CITY: dict[str, Any] = {"type": "string", "maxLength": 40}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {"type": "object", "properties": {"city": CITY}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time", "description": "The time now"}},
]
NAMED = {"type": "function", "function": {"name": "get_time"}}


@pytest.fixture(scope="module")
def vocab_model() -> Iterator[llama_cpp.Llama]:
    model = llama_cpp.Llama(str(require_model("smollm2")), vocab_only=True, verbose=False)
    yield model
    model.close()


@pytest.fixture(scope="module")
def llm() -> Iterator[llama_cpp.Llama]:
    # One thread: llama.cpp's threads spin at barriers, so two threads on two busy cores can run a
    # 96-token generation 50 times slower (seen: 200 s); one thread degrades only in proportion.
    # As the backend loads it (repack decided per CPU): a plain Llama crashes on AMX machines.
    model = open_llama(model_path=str(require_model("smollm2")), n_ctx=1024, n_threads=1, verbose=False)
    yield model
    model.close()


def parses(model: llama_cpp.Llama, gbnf: str) -> bool:
    """What the backend checks first: llama.cpp returns no sampler for a grammar it cannot parse."""
    sampler = llama_cpp.llama_sampler_init_grammar(
        llama_cpp.llama_model_get_vocab(model.model), gbnf.encode(), b"root"
    )
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    return bool(sampler)


def accepts(model: llama_cpp.Llama, gbnf: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the tokens of `text` through, then end of text."""
    vocab = llama_cpp.llama_model_get_vocab(model.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    assert sampler, "grammar does not parse"
    try:
        tokens = model.tokenize(text.encode(), add_bos=False, special=False)
        for token in [*tokens, llama_cpp.llama_vocab_eos(vocab)]:
            candidate = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            array = llama_cpp.llama_token_data_array(candidate, 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
            if math.isinf(candidate[0].logit):  # the grammar masks a token by setting its logit to -inf
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def generate(llm: llama_cpp.Llama, gbnf: str, user: str, system: str = "") -> str:
    prompt = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    prompt += f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    constraint = LlamaGrammar.from_string(gbnf, verbose=False)
    completion = llm.create_completion(prompt, max_tokens=96, temperature=0, grammar=constraint)
    choice = completion["choices"][0]  # type: ignore[index]
    assert choice["finish_reason"] == "stop", f"ran out of tokens: {choice['text']!r}"
    return str(choice["text"])


# Pure: what the grammars are.

GRAMMARS: dict[str, Callable[[], str]] = {
    "json_object": grammar.json_object_grammar,
    "json_schema": lambda: grammar.json_schema_grammar(
        {"type": "object", "properties": {"a": {"type": "integer"}}}
    ),
    "tools-required": lambda: grammar.tool_call_grammar(TOOLS, "required"),
    "tools-auto": lambda: grammar.tool_call_grammar(TOOLS, "auto"),
    "tools-named": lambda: grammar.tool_call_grammar(TOOLS, NAMED),
}


@pytest.mark.parametrize("make", GRAMMARS.values(), ids=GRAMMARS.keys())
def test_grammars_parse_in_llama_cpp(vocab_model: llama_cpp.Llama, make: Callable[[], str]) -> None:
    assert parses(vocab_model, make())


def test_the_checks_themselves_reject(vocab_model: llama_cpp.Llama) -> None:
    assert not parses(vocab_model, 'root ::= "unclosed')
    assert not accepts(vocab_model, 'root ::= "a"', "b")
    assert not accepts(vocab_model, 'root ::= "ab"', "a")  # stopping early is refused too


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ('{"a": 1, "b": [true, null, "x"]}', True),
        ('{"a": "line\\nbreak"}', True),
        ('{"a": "line\nbreak"}', False),  # JSON forbids raw control characters in strings
        ("[1]", False),
        ('"a"', False),
    ],
)
def test_json_object_is_any_object_and_only_objects(
    vocab_model: llama_cpp.Llama, text: str, allowed: bool
) -> None:
    assert accepts(vocab_model, grammar.json_object_grammar(), text) is allowed


def test_json_schema_bounds_the_output(vocab_model: llama_cpp.Llama) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "tag": {"enum": ["x", "y"]}, "any": {"description": "free"}},
        "required": ["n"],
    }
    gbnf = grammar.json_schema_grammar(schema)
    assert accepts(vocab_model, gbnf, '{"n": 3, "tag": "y", "any": [1, "two"]}')
    assert not accepts(vocab_model, gbnf, '{"tag": "y"}')  # n is required
    assert not accepts(vocab_model, gbnf, '{"n": 3, "tag": "z"}')
    assert not accepts(vocab_model, gbnf, '{"n": 3, "other": 1}')  # no additionalProperties given


def test_schemas_with_defs_and_any_values_convert(vocab_model: llama_cpp.Llama) -> None:
    schema = {
        "type": "object",
        "properties": {"to": {"$ref": "#/$defs/Address"}, "data": {"title": "Data"}},
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"street": {"type": "string"}},
                "required": ["street"],
            }
        },
    }
    gbnf = grammar.json_schema_grammar(schema)
    assert accepts(vocab_model, gbnf, '{"to": {"street": "Main"}, "data": 4}')
    assert not accepts(vocab_model, gbnf, '{"to": {}}')


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ('{"name": "get_weather", "arguments": {"city": "Oslo"}}', True),
        ('{"name": "get_time", "arguments": {"zone": "UTC"}}', True),
        ('{"arguments": {}, "name": "get_time"}', False),  # name first
        ('{"name": "get_weather", "arguments": {}}', False),  # city is required
        ('{"name": "other", "arguments": {}}', False),
        ("It is sunny.", False),
    ],
)
def test_required_tool_choice_allows_only_calls(
    vocab_model: llama_cpp.Llama, text: str, allowed: bool
) -> None:
    assert accepts(vocab_model, grammar.tool_call_grammar(TOOLS, "required"), text) is allowed


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ('{"name": "get_time", "arguments": {}}', True),
        ("It is sunny.", True),
        (" It is sunny.", True),
        ('{"name": "other", "arguments": {}}', False),
        (' {"name": "other", "arguments": {}}', False),  # stripped, this would be an unchecked call
        ('\n{"name": "other", "arguments": {}}', False),
        ("", False),
    ],
)
def test_auto_tool_choice_allows_a_call_or_text(
    vocab_model: llama_cpp.Llama, text: str, allowed: bool
) -> None:
    assert accepts(vocab_model, grammar.tool_call_grammar(TOOLS, "auto"), text) is allowed


def test_a_named_tool_choice_allows_only_that_tool(vocab_model: llama_cpp.Llama) -> None:
    named = grammar.tool_call_grammar(TOOLS, NAMED)
    assert accepts(vocab_model, named, '{"name": "get_time", "arguments": {}}')
    assert not accepts(vocab_model, named, '{"name": "get_weather", "arguments": {"city": "Oslo"}}')


def test_tools_keep_their_own_definitions(vocab_model: llama_cpp.Llama) -> None:
    def tool(name: str, field: str) -> dict[str, Any]:
        place = {"type": "object", "properties": {field: {"type": "string"}}, "required": [field]}
        parameters = {
            "type": "object",
            "properties": {"to": {"$ref": "#/$defs/Place"}},
            "$defs": {"Place": place},
        }
        return {"type": "function", "function": {"name": name, "parameters": parameters}}

    gbnf = grammar.tool_call_grammar([tool("ship", "street"), tool("bill", "iban")], "required")
    assert accepts(vocab_model, gbnf, '{"name": "ship", "arguments": {"to": {"street": "Main"}}}')
    assert accepts(vocab_model, gbnf, '{"name": "bill", "arguments": {"to": {"iban": "NO93"}}}')
    assert not accepts(vocab_model, gbnf, '{"name": "bill", "arguments": {"to": {"street": "Main"}}}')


@pytest.mark.parametrize(
    ("tools", "choice", "field"),
    [
        ([], "required", "tools: "),
        (
            TOOLS,
            {"type": "function", "function": {"name": "nope"}},
            "tool_choice.function.name: no tool named 'nope'",
        ),
        (TOOLS, "sometimes", "tool_choice: "),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
            "auto",
            "tools[0].function.parameters: ",
        ),
        (
            [TOOLS[0], {"type": "function", "function": {"name": "f", "parameters": ["x"]}}],
            "auto",
            "tools[1].function.parameters: ",
        ),
        ([{"type": "function", "function": {"description": "no name"}}], "auto", "tools[0].function.name: "),
    ],
)
def test_impossible_tool_setups_name_the_field(tools: list[dict[str, Any]], choice: Any, field: str) -> None:
    with pytest.raises(grammar.GrammarError) as raised:
        grammar.tool_call_grammar(tools, choice)
    assert str(raised.value).startswith(field)


def test_a_schema_the_converter_cannot_do_names_its_tool() -> None:
    broken = {
        "type": "function",
        "function": {"name": "f", "parameters": {"properties": {"x": {"type": "wat"}}}},
    }
    with pytest.raises(grammar.GrammarError, match=r"^tools\[1\]\.function\.parameters: .*wat"):
        grammar.tool_call_grammar([TOOLS[0], broken], "required")


def test_the_unknown_tool_message_lists_the_tools() -> None:
    with pytest.raises(grammar.GrammarError, match="tools are: get_weather, get_time$"):
        grammar.tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "nope"}})


@pytest.mark.parametrize(
    "schema",
    [
        ["not", "a", "schema"],
        {"type": "wat"},
        {"$ref": "https://example.com/schema.json"},
        {"$ref": "#/$defs/missing"},
    ],
)
def test_schemas_the_converter_cannot_do_name_the_field(schema: Any) -> None:
    with pytest.raises(grammar.GrammarError, match=r"^response_format\.json_schema\.schema: "):
        grammar.json_schema_grammar(schema)


def test_tool_prompt_names_the_tools_and_the_format() -> None:
    prompt = grammar.tool_system_prompt(TOOLS, "required")
    assert "get_weather" in prompt and "The time now" in prompt and '"arguments"' in prompt
    assert '"maxLength": 40' in prompt and "must call one of" in prompt
    assert "Otherwise answer normally" in grammar.tool_system_prompt(TOOLS, "auto")
    named = grammar.tool_system_prompt(TOOLS, NAMED)
    assert "must call the tool get_time" in named and "get_weather" not in named


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "get_weather", "arguments": {"city": "Oslo"}}', ("get_weather", '{"city":"Oslo"}')),
        (' {"name": "get_time", "arguments": {}} \n', ("get_time", "{}")),
        ('{"name": "get_weather", "arguments": {"city": "Tromsø"}}', ("get_weather", '{"city":"Tromsø"}')),
        ('{"name": "unknown", "arguments": {}}', None),
        ('{"name": "get_time", "arguments": "{}"}', None),
        ('{"name": "get_time"}', None),
        ('{"name": "get_time", "arguments": {', None),
        ("The weather is fine.", None),
        ("[1, 2]", None),
    ],
)
def test_parse_tool_call(text: str, expected: tuple[str, str] | None) -> None:
    assert grammar.parse_tool_call(text, TOOLS) == expected


# End to end: the grammars constrain a real generation.


def test_json_object_generation_is_an_object(llm: llama_cpp.Llama) -> None:
    text = generate(
        llm, grammar.json_object_grammar(), 'Return a JSON object with the keys "name" and "age" for Bob, 30.'
    )
    assert isinstance(json.loads(text), dict)


def test_json_schema_generation_matches_the_schema(llm: llama_cpp.Llama) -> None:
    schema = {
        "type": "object",
        "properties": {"city": CITY, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    text = generate(
        llm, grammar.json_schema_grammar(schema), "The largest city in France and its population?"
    )
    answer = json.loads(text)
    assert set(answer) == {"city", "population"}
    assert isinstance(answer["city"], str) and isinstance(answer["population"], int)


def test_required_tool_generation_is_a_call(llm: llama_cpp.Llama) -> None:
    system = grammar.tool_system_prompt(TOOLS, "required")
    text = generate(
        llm, grammar.tool_call_grammar(TOOLS, "required"), "What is the weather in Paris?", system
    )
    call = grammar.parse_tool_call(text, TOOLS)
    assert call is not None, text
    name, arguments = call
    parameters = next(t["function"].get("parameters", {}) for t in TOOLS if t["function"]["name"] == name)
    assert set(parameters.get("required", [])) <= set(json.loads(arguments))


def test_auto_tool_generation_may_answer_in_text(llm: llama_cpp.Llama) -> None:
    system = grammar.tool_system_prompt(TOOLS, "auto")
    text = generate(llm, grammar.tool_call_grammar(TOOLS, "auto"), "Say hello.", system)
    assert grammar.parse_tool_call(text, TOOLS) is not None or not text.lstrip().startswith("{")


def nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def test_schemas_nested_as_deep_as_structured_outputs_allow_convert(vocab_model: llama_cpp.Llama) -> None:
    gbnf = grammar.json_schema_grammar(nested(10))  # OpenAI's limit: 10 levels of nesting
    assert accepts(vocab_model, gbnf, '{"a": ' * 10 + '"x"' + "}" * 10)


@pytest.mark.parametrize("levels", [40, 450])
def test_a_schema_nested_too_deep_is_refused_naming_the_field(levels: int) -> None:
    # 450 levels (JSON depth 900) once became a 6 MB grammar; deeper still hits Python's recursion limit.
    with pytest.raises(grammar.GrammarError, match=r"^response_format\.json_schema\.schema: nested more"):
        grammar.json_schema_grammar(nested(levels))
    tool = {"type": "function", "function": {"name": "f", "parameters": nested(levels)}}
    with pytest.raises(grammar.GrammarError, match=r"^tools: nested more than 64"):
        grammar.tool_call_grammar([tool], "auto")
