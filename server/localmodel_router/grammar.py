"""GBNF grammars (llama.cpp's constrained-output language) for JSON mode, JSON Schema and tool calls,
and parsing a constrained tool call back.

The router builds grammars so that every backend that accepts `PredictOptions.grammar` (ours and
LocalAI's llama.cpp) constrains output the same way. JSON Schema → GBNF is llama-cpp-python's own
converter, which follows llama.cpp's; it is imported on first use, so a router that never sees such a
request never loads llama.cpp's library.
"""

from __future__ import annotations

import json
from typing import Any

# The root rule of a tool-call grammar, renamed so that "auto" can offer plain text beside it.
_TOOL_CALL_RULE = "tool-call"
# Plain text for tool_choice "auto": anything that does not start like a JSON object.
_TEXT_RULES = "text ::= [^{ \\t\\n] [^\\x00]*"


class GrammarError(ValueError):
    """A schema or tool definition that cannot become a grammar; the message starts with the field."""


def json_object_grammar() -> str:
    """Any JSON object (response_format json_object)."""
    return _convert({"type": "object"}, "response_format")


def json_schema_grammar(schema: dict[str, Any], field: str = "response_format.json_schema.schema") -> str:
    """JSON matching `schema` (response_format json_schema)."""
    if not isinstance(schema, dict):
        raise GrammarError(f"{field}: must be a JSON Schema object")
    return _convert(schema, field)


def tool_call_grammar(tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]) -> str:
    """One call `{"name": ..., "arguments": {...}}` of an allowed tool; for "auto", or plain text instead."""
    allowed = _allowed_tools(tools, tool_choice)
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": tool["function"]["name"]}, "arguments": _parameters(i, tool)},
            "required": ["name", "arguments"],
        }
        for i, tool in allowed
    ]
    schema = calls[0] if len(calls) == 1 else {"oneOf": calls}
    grammar = _convert(schema, "tools", prop_order=["name", "arguments"])
    if tool_choice != "auto":
        return grammar
    renamed = grammar.replace("root ::=", f"{_TOOL_CALL_RULE} ::=", 1)
    return f"root ::= {_TOOL_CALL_RULE} | text\n{_TEXT_RULES}\n{renamed}"


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
    else:
        lines.append(f"You must call {'this tool' if len(allowed) == 1 else 'one of them'}: {call}.")
    return "\n".join(lines)


def parse_tool_call(text: str, tools: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(name, arguments as JSON) when `text` is a call of a known tool; None for any other text."""
    try:
        call = json.loads(text.strip())
    except json.JSONDecodeError:
        return None
    names = {tool["function"]["name"] for tool in tools}
    if (
        not isinstance(call, dict)
        or call.get("name") not in names
        or not isinstance(call.get("arguments"), dict)
    ):
        return None
    return call["name"], json.dumps(call["arguments"])


def _allowed_tools(
    tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]
) -> list[tuple[int, dict[str, Any]]]:
    if not tools:
        raise GrammarError("tools: at least one tool is needed")
    indexed = list(enumerate(tools))
    if isinstance(tool_choice, dict):
        name = tool_choice.get("function", {}).get("name")
        indexed = [(i, tool) for i, tool in indexed if tool["function"]["name"] == name]
        if not indexed:
            known = ", ".join(tool["function"]["name"] for tool in tools)
            raise GrammarError(f"tool_choice.function.name: no tool named '{name}'; tools are: {known}")
    return indexed


def _parameters(index: int, tool: dict[str, Any]) -> dict[str, Any]:
    parameters = tool["function"].get("parameters") or {"type": "object"}
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise GrammarError(f"tools[{index}].function.parameters: must be a JSON Schema of type object")
    return parameters


def _convert(schema: dict[str, Any], field: str, prop_order: list[str] | None = None) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # loads llama.cpp's library: only when needed

    try:
        grammar: str = json_schema_to_gbnf(json.dumps(schema), prop_order=prop_order)
    except Exception as error:  # the converter raises bare Exceptions and KeyErrors on schemas it cannot do
        raise GrammarError(f"{field}: cannot be turned into a grammar ({error})") from error
    return grammar
