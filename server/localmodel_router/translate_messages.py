"""Pure mapping between Anthropic's Messages API and the chat path.

A Messages request becomes the chat completion request it means, so that its backend request is built
by `translate.chat_options` like every other chat (templates, tool grammars, token caps), and a reply
becomes Anthropic's content blocks and stop reason. What has no counterpart there is a 400 saying what
is supported.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Literal

from localmodel_router import translate
from localmodel_router.discovery import ModelRoute
from localmodel_router.errors import BadRequestError
from localmodel_router.protocol.chat import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    FunctionDefinition,
    JsonSchemaFormat,
    NamedToolChoice,
    NamedToolChoiceFunction,
    ResponseFormat,
    Tool,
    ToolCall,
)
from localmodel_router.protocol.common import new_id
from localmodel_router.protocol.messages import (
    CountTokensRequest,
    InputBlock,
    InputMessage,
    MessagesRequest,
    ResultBlock,
    StopDetails,
    TextBlock,
    ToolChoice,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
    UnsupportedBlock,
)

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2

SUPPORTED_BLOCKS = "only text content is supported (with tool_use and tool_result blocks for tools)"
_TOOL_CHOICES: dict[str, Literal["auto", "required", "none"]] = {
    "auto": "auto",
    "any": "required",
    "none": "none",
}


def messages_options(
    request: MessagesRequest, route: ModelRoute
) -> tuple[backend_pb2.PredictOptions, translate.ToolUse | None]:
    """PredictOptions for a Messages request, and the tools to parse the answer for (if any)."""
    options, tool_use = translate.chat_options(chat_request(request), route)
    options.top_k = request.top_k or 0  # 0: no top-k cut; chat requests have no top_k of their own
    return options, tool_use


def count_options(request: CountTokensRequest, route: ModelRoute) -> backend_pb2.PredictOptions:
    """The backend request whose prompt count_tokens counts: a Messages request's, built the same way
    (its tools' system prompt included)."""
    options, _ = translate.chat_options(chat_request(request), route)
    return options


def chat_request(request: CountTokensRequest) -> ChatCompletionRequest:
    """The chat completion request a Messages request asks for (a token count's: without sampling)."""
    if request.messages[-1].role == "assistant":
        # Anthropic continues a final assistant turn ("prefill"); a chat template would close it and
        # start a new one, which is a different answer.
        raise BadRequestError(
            "messages: a final assistant message (prefill) is not supported; end with a user message",
            param="messages",
        )
    messages = [m for i, message in enumerate(request.messages) for m in _chat_messages(i, message)]
    if request.system:
        messages.insert(0, ChatMessage(role="system", content=_system_text(request.system)))
    return ChatCompletionRequest(
        model=request.model,
        messages=messages,
        tools=[_tool(i, t) for i, t in enumerate(request.tools)] if request.tools else None,
        tool_choice=_tool_choice(request.tool_choice) if request.tool_choice else None,
        response_format=_response_format(request),
        **_generation(request),
    )


def answer_blocks(text: str, tool_use: translate.ToolUse | None) -> list[TextBlock | ToolUseBlock]:
    """The content of an answer: its tool call when the model made one, else its text."""
    calls = translate.tool_calls(text, tool_use) if tool_use is not None else None
    if not calls:
        return [TextBlock(text=text)]
    return [
        ToolUseBlock(id=tool_use_id(), name=call.function.name, input=json.loads(call.function.arguments))
        for call in calls
    ]


def stop(reply: backend_pb2.Reply, blocks: list[TextBlock | ToolUseBlock]) -> StopDetails:
    """Why the answer ended, and the stop sequence that ended it when one did (the backend says which)."""
    if any(isinstance(block, ToolUseBlock) for block in blocks):
        return StopDetails(stop_reason="tool_use")
    if reply.stop_sequence:
        return StopDetails(stop_reason="stop_sequence", stop_sequence=reply.stop_sequence)
    return StopDetails(stop_reason="max_tokens" if reply.finish_reason == "length" else "end_turn")


def message_id() -> str:
    return new_id("msg", "_")


def tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def _generation(request: CountTokensRequest) -> dict[str, Any]:
    """A Messages request's token limit, sampling and stop sequences; a token count has none."""
    if not isinstance(request, MessagesRequest):
        return {}
    return {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop_sequences or None,
    }


def _chat_messages(index: int, message: InputMessage) -> list[ChatMessage]:
    """One Anthropic message as chat messages: its tool results each become a tool message (they come
    first in a user turn, as Anthropic requires), its text and tool calls one message of its role."""
    if isinstance(message.content, str):
        return [ChatMessage(role=message.role, content=message.content)]
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for j, block in enumerate(message.content):
        where = f"messages[{index}].content[{j}]"
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock) and message.role == "assistant":
            arguments = json.dumps(block.input)
            calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments)))
        elif isinstance(block, ToolResultBlock) and message.role == "user":
            content = _result(block, where)
            results.append(ChatMessage(role="tool", tool_call_id=block.tool_use_id, content=content))
        else:
            raise _misplaced(block, message.role, where)
    if texts or calls or not results:
        results.append(ChatMessage(role=message.role, content="\n".join(texts), tool_calls=calls or None))
    return results


def _result(block: ToolResultBlock, where: str) -> str:
    text = block.content if isinstance(block.content, str) else _texts(block.content, f"{where}.content")
    # Chat messages have no error flag: the model reads it in the text.
    return f"Error: {text}" if block.is_error else text


def _system_text(system: str | list[InputBlock]) -> str:
    return system if isinstance(system, str) else _texts(system, "system")


def _texts(blocks: list[InputBlock] | list[ResultBlock], where: str) -> str:
    texts = []
    for j, block in enumerate(blocks):
        if not isinstance(block, TextBlock):
            message = f"{where}[{j}]: only text is supported here, got '{block.type}'"
            raise BadRequestError(message, param=f"{where}[{j}]")
        texts.append(block.text)
    return "\n".join(texts)


def _misplaced(block: InputBlock, role: str, where: str) -> BadRequestError:
    if isinstance(block, UnsupportedBlock):
        return BadRequestError(f"{where}: {SUPPORTED_BLOCKS}, got '{block.type}'", param=where)
    belongs = "assistant" if isinstance(block, ToolUseBlock) else "user"
    return BadRequestError(
        f"{where}: '{block.type}' blocks belong in {belongs} messages, not {role} ones", param=where
    )


def _tool(index: int, tool: ToolDefinition) -> Tool:
    if tool.type not in (None, "custom"):
        raise BadRequestError(
            f"tools[{index}]: server tool '{tool.type}' is not supported; define custom tools with an "
            "input_schema",
            param=f"tools[{index}]",
        )
    function = FunctionDefinition(name=tool.name, description=tool.description, parameters=tool.input_schema)
    return Tool(function=function)


def _tool_choice(choice: ToolChoice) -> Literal["auto", "required", "none"] | NamedToolChoice:
    if choice.type != "tool":
        return _TOOL_CHOICES[choice.type]
    if not choice.name:
        raise BadRequestError("tool_choice.name: required when type is 'tool'", param="tool_choice.name")
    return NamedToolChoice(function=NamedToolChoiceFunction(name=choice.name))


def _response_format(request: CountTokensRequest) -> ResponseFormat | None:
    """Structured output (`output_config.format`) as the chat path's JSON Schema response format."""
    wanted = request.output_config.format if request.output_config else None
    if wanted is None:
        return None
    return ResponseFormat(
        type="json_schema", json_schema=JsonSchemaFormat.model_validate({"schema": wanted.schema_})
    )
