"""GBNF grammars (llama.cpp's constrained-output language) for JSON mode, JSON Schema and tool calls,
and parsing a constrained tool call back.

The router builds grammars so that every backend that accepts `PredictOptions.grammar` (ours and
LocalAI's llama.cpp) constrains output the same way. JSON Schema → GBNF is llama-cpp-python's own
converter, imported on first use so that a router which never sees such a request never loads
llama.cpp's library. `_prepare` and `_CHAR_RULE` patch the few places where that converter's
Python copy lags llama.cpp's C++ one; everything else is the converter's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

# A tool call is `{"name": ..., "arguments": {...}}`, name first so the model commits to a tool
# before it writes arguments for one.
_CALL_ORDER = ["name", "arguments"]
# tool_choice "auto": besides a call, any text whose first visible character is not "{". Leading
# whitespace before "{" is ruled out too, or " {…}" would be an unconstrained call once stripped; one
# optional space stays allowed for vocabularies whose word tokens carry it (SentencePiece's "▁Hello").
_FREE_TEXT = r'" "? [^{ \t\n] [^\x00]*'
# JSON strings may not hold raw control characters; the Python converter's `char` allows them (so
# json.loads would reject what the grammar let through), llama.cpp's own converter does not.
_CHAR_RULE = (
    r'char ::= [^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
)
# "Any JSON value". The converter turns `{}` into "any object" and rejects schemas without a type
# keyword (`{"description": ...}`, pydantic's `{"title": ...}` for `Any`), so both become this.
_ANY_VALUE: dict[str, Any] = {"type": ["object", "array", "string", "number", "boolean", "null"]}
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_SLOTS = ("items", "prefixItems", "additionalProperties", "oneOf", "anyOf", "allOf")
# Keywords the converter builds rules from; a schema with none of them constrains nothing.
_SHAPING = frozenset({"type", "$ref", "const", "enum", "pattern", "format", "properties", *_SUBSCHEMA_SLOTS})
_DEF_KEYWORDS = ("$defs", "definitions")
# Bounds on what one request may make the router convert and the backend parse: a schema nested 900 deep
# (23 KB) became a 6 MB grammar. 64 levels of JSON is about 30 of nested objects, three times what
# OpenAI's structured outputs allow (10); real grammars are a few KB.
MAX_SCHEMA_DEPTH = 64
MAX_GRAMMAR_BYTES = 1024 * 1024


class GrammarError(ValueError):
    """A schema or tool definition that cannot become a grammar; the message starts with the field."""


def json_object_grammar() -> str:
    """Any JSON object (response_format json_object)."""
    return _convert({"type": "object"}, "response_format")


def json_schema_grammar(schema: dict[str, Any], field: str = "response_format.json_schema.schema") -> str:
    """JSON matching `schema` (response_format json_schema)."""
    if not isinstance(schema, dict):
        raise GrammarError(f"{field}: must be a JSON Schema object")
    _check_depth(schema, field)
    return _convert(_prepare(schema, None), field)


def tool_call_grammar(tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]) -> str:
    """One call `{"name": ..., "arguments": {...}}` of an allowed tool; for "auto", or plain text instead.

    All calls are alternatives of one schema, so the converter names every rule and nothing has to be
    renamed. Each tool's parameters keep working `$ref`s: their definitions move to the top-level
    `$defs` under a per-tool prefix (the converter names a referenced rule after its last path
    segment, so two tools' `Address` definitions would otherwise share one rule).
    """
    _check_depth(tools, "tools")
    calls: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for index, tool in _allowed_tools(tools, tool_choice):
        arguments, tool_defs = _tool_arguments(index, tool)
        defs.update(tool_defs)
        properties = {"name": {"const": tool["function"]["name"]}, "arguments": arguments}
        calls.append({"type": "object", "properties": properties, "required": _CALL_ORDER})
    try:
        grammar = _convert({"oneOf": calls, "$defs": defs}, "tools", prop_order=_CALL_ORDER)
    except GrammarError:
        _blame_one_tool(tools, tool_choice)
        raise
    if tool_choice != "auto":
        return grammar
    return re.sub(
        r"^root ::= (.*)$", lambda m: f"root ::= ( {m[1]} ) | {_FREE_TEXT}", grammar, count=1, flags=re.M
    )


def tool_system_prompt(tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]) -> str:
    """Tells the model which tools exist and how to call one (chat templates may not render tools)."""
    allowed = _allowed_tools(tools, tool_choice)
    lines = ["You can call these tools:"]
    for _, tool in allowed:
        function = tool["function"]
        description = f": {function['description']}" if function.get("description") else ""
        parameters = json.dumps(function.get("parameters") or {"type": "object"})
        lines.append(f"- {function['name']}{description}. Arguments (JSON Schema): {parameters}")
    call = 'answer with only a JSON object {"name": "<tool name>", "arguments": {<arguments>}}'
    if tool_choice == "auto":
        lines.append(f"To call a tool, {call}. Otherwise answer normally.")
    elif len(allowed) == 1:
        lines.append(f"You must call the tool {allowed[0][1]['function']['name']}: {call}.")
    else:
        lines.append(f"You must call one of these tools: {call}.")
    return "\n".join(lines)


def parse_tool_call(text: str, tools: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(name, arguments as compact JSON) when `text` is a call of a known tool; None for any other text."""
    try:
        call = json.loads(text.strip())
    except (json.JSONDecodeError, RecursionError):
        return None
    names = {tool["function"]["name"] for tool in tools}
    if (
        not isinstance(call, dict)
        or call.get("name") not in names
        or not isinstance(call.get("arguments"), dict)
    ):
        return None
    # OpenAI sends arguments compact and with non-ASCII text as is; clients json.loads them either way.
    return call["name"], json.dumps(call["arguments"], separators=(",", ":"), ensure_ascii=False)


def _allowed_tools(
    tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]
) -> list[tuple[int, dict[str, Any]]]:
    if not tools:
        raise GrammarError("tools: at least one tool is needed")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise GrammarError(f"tools[{index}].function.name: every tool needs a function with a name")
    indexed = list(enumerate(tools))
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        indexed = [(i, tool) for i, tool in indexed if tool["function"]["name"] == name]
        if not indexed:
            known = ", ".join(tool["function"]["name"] for tool in tools)
            raise GrammarError(f"tool_choice.function.name: no tool named '{name}'; tools are: {known}")
    elif tool_choice not in ("auto", "required"):
        raise GrammarError(
            f"tool_choice: must be 'auto', 'required' or a named function, not {tool_choice!r}"
        )
    return indexed


def _tool_arguments(index: int, tool: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tool's parameters schema for the combined grammar, and the `$defs` entries it refers to."""
    parameters = tool["function"].get("parameters") or {"type": "object"}
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise GrammarError(f"tools[{index}].function.parameters: must be a JSON Schema of type object")
    prefix = f"tool{index}"

    def rebase(ref: str) -> str:
        if ref != "#" and not ref.startswith("#/"):
            return ref  # remote or anchor refs: the converter refuses them, naming the ref
        path = ref.split("/")[1:]
        if len(path) >= 2 and path[0] in _DEF_KEYWORDS:
            return "/".join(["#", "$defs", f"{prefix}def-{path[1]}", *path[2:]])
        return "/".join(["#", "$defs", prefix, *path])

    arguments = _prepare({"type": "object", **parameters}, rebase)
    defs = {prefix: arguments}
    for keyword in _DEF_KEYWORDS:
        for name, definition in (arguments.get(keyword) or {}).items():
            defs[f"{prefix}def-{name}"] = definition
    return arguments, defs


def _blame_one_tool(tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]) -> None:
    """Convert the tools one by one, so the error names the tool the converter cannot do."""
    for index, tool in _allowed_tools(tools, tool_choice):
        arguments, tool_defs = _tool_arguments(index, tool)
        _convert({**arguments, "$defs": tool_defs}, f"tools[{index}].function.parameters")


def _prepare(schema: Any, rebase: Callable[[str], str] | None) -> Any:
    """A copy of `schema` the converter handles: "any value" spelled out, `$ref`s passed to `rebase`."""
    if schema is True:
        return dict(_ANY_VALUE)
    if not isinstance(schema, dict):
        return schema
    if not schema.keys() & _SHAPING:
        return dict(_ANY_VALUE)
    prepared = dict(schema)
    for key in _SUBSCHEMA_MAPS:
        if isinstance(prepared.get(key), dict):
            prepared[key] = {name: _prepare(sub, rebase) for name, sub in prepared[key].items()}
    for key in _SUBSCHEMA_SLOTS:
        if isinstance(prepared.get(key), list):
            prepared[key] = [_prepare(sub, rebase) for sub in prepared[key]]
        elif key in prepared:
            prepared[key] = _prepare(prepared[key], rebase)
    if rebase is not None and isinstance(prepared.get("$ref"), str):
        prepared["$ref"] = rebase(prepared["$ref"])
    return prepared


def _convert(schema: dict[str, Any], field: str, prop_order: list[str] | None = None) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # loads llama.cpp's library: only when needed

    try:
        grammar: str = json_schema_to_gbnf(json.dumps(schema), prop_order=prop_order)
    except Exception as error:  # the converter raises bare Exceptions, AssertionErrors and KeyErrors
        raise GrammarError(f"{field}: cannot be turned into a grammar ({str(error)[:200]})") from error
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise GrammarError(f"{field}: makes a grammar of {len(grammar)} bytes, over {MAX_GRAMMAR_BYTES}")
    return re.sub(r"^char ::= .*$", lambda _: _CHAR_RULE, grammar, count=1, flags=re.M)


def _check_depth(value: Any, field: str) -> None:
    # Before anything recursive walks it: Python's recursion limit is about 1000 frames.
    if _depth(value) > MAX_SCHEMA_DEPTH:
        raise GrammarError(f"{field}: nested more than {MAX_SCHEMA_DEPTH} levels deep")


def _depth(value: Any) -> int:
    """How deep dicts and lists nest in a JSON value (iteratively: the input may be very deep)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return deepest
