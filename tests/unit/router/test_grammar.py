"""Grammars must parse in llama.cpp itself, and tool calls must parse back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import llama_cpp
import pytest

from localmodel_router import grammar
from tests.support.models import require_model

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "description": "The time now"}},
]


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    model = llama_cpp.Llama(str(require_model("smollm2")), vocab_only=True, verbose=False)
    yield llama_cpp.llama_model_get_vocab(model.model)


def parses(vocab: Any, gbnf: str) -> bool:
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    return bool(sampler)


@pytest.mark.parametrize(
    "make",
    [
        grammar.json_object_grammar,
        lambda: grammar.json_schema_grammar({"type": "object", "properties": {"a": {"type": "integer"}}}),
        lambda: grammar.tool_call_grammar(TOOLS, "required"),
        lambda: grammar.tool_call_grammar(TOOLS, "auto"),
        lambda: grammar.tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "get_time"}}),
    ],
    ids=["json_object", "json_schema", "tools-required", "tools-auto", "tools-named"],
)
def test_grammars_parse_in_llama_cpp(vocab: Any, make: Any) -> None:
    assert parses(vocab, make())


def test_the_check_itself_rejects_a_broken_grammar(vocab: Any) -> None:
    assert not parses(vocab, 'root ::= "unclosed')


def test_a_named_tool_choice_allows_only_that_tool() -> None:
    named = grammar.tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "get_time"}})
    assert "get_time" in named and "get_weather" not in named


@pytest.mark.parametrize(
    ("tools", "choice", "field"),
    [
        ([], "required", "tools"),
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice.function.name"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
            "auto",
            "tools[0]",
        ),
    ],
)
def test_impossible_tool_setups_name_the_field(tools: list[dict[str, Any]], choice: Any, field: str) -> None:
    with pytest.raises(grammar.GrammarError, match=field.replace("[", r"\[").replace("]", r"\]")):
        grammar.tool_call_grammar(tools, choice)


def test_tool_prompt_names_the_tools_and_the_format() -> None:
    prompt = grammar.tool_system_prompt(TOOLS, "required")
    assert "get_weather" in prompt and "The time now" in prompt and '"arguments"' in prompt
    assert "must call" in prompt
    assert "Otherwise answer normally" in grammar.tool_system_prompt(TOOLS, "auto")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "get_weather", "arguments": {"city": "Oslo"}}', ("get_weather", {"city": "Oslo"})),
        (' {"name": "get_time", "arguments": {}} ', ("get_time", {})),
        ('{"name": "unknown", "arguments": {}}', None),
        ('{"name": "get_time", "arguments": "{}"}', None),
        ("The weather is fine.", None),
        ("[1, 2]", None),
    ],
)
def test_parse_tool_call(text: str, expected: tuple[str, dict[str, Any]] | None) -> None:
    parsed = grammar.parse_tool_call(text, TOOLS)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None and (parsed[0], json.loads(parsed[1])) == expected
