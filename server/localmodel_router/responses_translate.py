"""Pure mapping between the Responses API and the chat path: a Responses request becomes a chat request
(which `translate.chat_options` turns into the backend's), and a chat answer becomes output items.

Responses are not stored, so what needs a stored response or conversation is refused with a 400 that
says so; so is every input item, content part or tool this router cannot serve, by its type.
"""

from __future__ import annotations

from typing import Literal

from localmodel_router import translate
from localmodel_router.errors import BadRequestError
from localmodel_router.protocol import common
from localmodel_router.protocol.chat import (
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionCall,
    FunctionDefinition,
    NamedToolChoice,
    NamedToolChoiceFunction,
    ResponseFormat,
    Tool,
    ToolCall,
)
from localmodel_router.protocol.common import FinishReason
from localmodel_router.protocol.responses import (
    CreateResponseRequest,
    FunctionCallItem,
    FunctionTool,
    IncompleteDetails,
    InputItem,
    InputPart,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseObject,
    ResponseUsage,
    Status,
    TextConfig,
    ToolSpec,
)

NOT_STORED = "responses are not stored by this router; send the whole conversation as input"
_MESSAGE_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text")
# Chat's parameter names in errors from `translate.chat_options`, as a Responses client knows them.
_RENAMED = (
    ("response_format.json_schema.schema", "text.format.schema"),
    ("response_format", "text.format"),
    (".function.", "."),
    ("max_tokens", "max_output_tokens"),
)


def new_id(prefix: str) -> str:
    """OpenAI's Responses ids: `resp_…`, `msg_…`, `fc_…`."""
    return common.new_id(prefix, "_")


def chat_request(request: CreateResponseRequest) -> ChatCompletionRequest:
    """The chat request that asks the model what `request` asks it."""
    for param, given in (
        ("previous_response_id", request.previous_response_id),
        ("conversation", request.conversation),
    ):
        if given is not None:
            raise BadRequestError(f"{param}: {NOT_STORED}", param=param)
    messages = [ChatMessage(role="system", content=request.instructions)] if request.instructions else []
    messages.extend(_messages(request.input))
    tools = [_tool(index, tool) for index, tool in enumerate(request.tools or [])]
    return ChatCompletionRequest(
        model=request.model,
        messages=messages,
        max_completion_tokens=request.max_output_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stream=request.stream,
        tools=tools or None,
        tool_choice=_tool_choice(request),
        response_format=_response_format(request.text),
        user=request.user,
    )


def renamed(error: BadRequestError) -> BadRequestError:
    """A chat-path 400 with the Responses API's names for its parameters."""
    message, param = error.message, error.param
    for chat_name, name in _RENAMED:
        message = message.replace(chat_name, name)
        param = param.replace(chat_name, name) if param else param
    return BadRequestError(message, param=param)


def output(text: str, finish: FinishReason, tool_use: translate.ToolUse | None) -> list[OutputItem]:
    """The output items of one answer: its tool calls, or one message."""
    calls = translate.tool_calls(text, tool_use) if tool_use is not None else None
    if calls:
        return [function_call(call) for call in calls]
    return [message(new_id("msg"), text, finish)]


def message(item_id: str, text: str, finish: FinishReason) -> OutputMessage:
    status: Status = "incomplete" if finish == "length" else "completed"
    return OutputMessage(id=item_id, status=status, content=[OutputText(text=text)])


def function_call(call: ToolCall) -> FunctionCallItem:
    function = call.function
    return FunctionCallItem(
        id=new_id("fc"), call_id=call.id, name=function.name, arguments=function.arguments, status="completed"
    )


def response_object(
    request: CreateResponseRequest,
    response_id: str,
    created_at: int,
    items: list[OutputItem],
    tokens: tuple[int, int] | None = None,
) -> ResponseObject:
    """The response with `items`; in progress until its (input, output) token counts are known."""
    status: Status
    usage: ResponseUsage | None
    if tokens is None:
        status, usage = "in_progress", None
    else:
        # An answer cut at the token limit leaves its message incomplete, and so the response.
        status = "incomplete" if any(item.status == "incomplete" for item in items) else "completed"
        usage = ResponseUsage(input_tokens=tokens[0], output_tokens=tokens[1], total_tokens=sum(tokens))
    choice = request.tool_choice or "auto"
    return ResponseObject(
        id=response_id,
        created_at=created_at,
        status=status,
        incomplete_details=IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None,
        model=request.model,
        output=items,
        usage=usage,
        instructions=request.instructions,
        max_output_tokens=request.max_output_tokens,
        metadata=request.metadata or {},
        parallel_tool_calls=request.parallel_tool_calls,
        temperature=translate.DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
        top_p=translate.DEFAULT_TOP_P if request.top_p is None else request.top_p,
        tool_choice=choice if isinstance(choice, str) else choice.model_dump(exclude_none=True),
        tools=[FunctionTool.model_validate(tool.model_dump()) for tool in request.tools or []],
        text=request.text or TextConfig(),
        user=request.user,
        store=False,  # whatever was asked: nothing is kept
    )


def _messages(given: str | list[InputItem]) -> list[ChatMessage]:
    if isinstance(given, str):
        return [ChatMessage(role="user", content=given)]
    if not given:
        raise BadRequestError("input: must not be empty", param="input")
    messages: list[ChatMessage] = []
    for index, item in enumerate(given):
        param = f"input[{index}]"
        kind = item.type or ("message" if item.role else None)
        if kind == "message":
            messages.append(_message(param, item))
        elif kind == "function_call":
            call = ToolCall(
                id=_required(param, "call_id", item.call_id),
                function=FunctionCall(
                    name=_required(param, "name", item.name),
                    arguments=_required(param, "arguments", item.arguments),
                ),
            )
            previous = messages[-1] if messages else None
            # Calls made together (parallel) are one assistant turn, as chat templates expect.
            if previous is not None and previous.role == "assistant" and previous.tool_calls:
                previous.tool_calls.append(call)
            else:
                messages.append(ChatMessage(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            output = item.output if item.output is not None else ""
            messages.append(
                ChatMessage(
                    role="tool",
                    tool_call_id=_required(param, "call_id", item.call_id),
                    content=output if isinstance(output, str) else _text_parts(f"{param}.output", output),
                )
            )
        elif kind == "item_reference":
            raise BadRequestError(f"{param}: item references need stored items; {NOT_STORED}", param=param)
        else:
            raise BadRequestError(
                f"{param}: input items of type '{kind}' are not supported; send messages, "
                "function_call and function_call_output items",
                param=f"{param}.type",
            )
    return messages


def _message(param: str, item: InputItem) -> ChatMessage:
    if item.role not in _MESSAGE_ROLES:
        raise BadRequestError(
            f"{param}.role: must be one of {', '.join(_MESSAGE_ROLES)}, got {item.role!r}",
            param=f"{param}.role",
        )
    content = item.content if item.content is not None else ""
    return ChatMessage(
        role=item.role,  # type: ignore[arg-type]  # checked just above
        content=content if isinstance(content, str) else _text_parts(f"{param}.content", content),
    )


def _text_parts(param: str, parts: list[InputPart]) -> list[ContentPart]:
    texts = []
    for index, part in enumerate(parts):
        if part.type not in _TEXT_PARTS or part.text is None:
            raise BadRequestError(
                f"{param}[{index}]: only text is supported (input_text, output_text), got '{part.type}'",
                param=f"{param}[{index}]",
            )
        texts.append(ContentPart(type="text", text=part.text))
    return texts


def _required(param: str, field: str, value: str | None) -> str:
    if value is None:
        raise BadRequestError(f"{param}.{field}: required", param=f"{param}.{field}")
    return value


def _tool(index: int, tool: ToolSpec) -> Tool:
    param = f"tools[{index}]"
    if tool.type != "function":
        raise BadRequestError(
            f"{param}: tools of type '{tool.type}' are not supported; only 'function' tools are",
            param=f"{param}.type",
        )
    name = _required(param, "name", tool.name)
    try:
        # The grammar always holds arguments to `parameters`: `strict` is what happens either way.
        function = FunctionDefinition(name=name, description=tool.description, parameters=tool.parameters)
    except ValueError as error:  # pydantic's ValidationError: the name's length or characters
        message = f"{param}.name: {name!r} is not a valid function name (1-64 of a-z, A-Z, 0-9, _ and -)"
        raise BadRequestError(message, param=f"{param}.name") from error
    return Tool(function=function)


def _tool_choice(
    request: CreateResponseRequest,
) -> Literal["none", "auto", "required"] | NamedToolChoice | None:
    choice = request.tool_choice
    if choice is None or isinstance(choice, str):
        return choice
    if choice.type != "function":
        raise BadRequestError(
            f"tool_choice: type '{choice.type}' is not supported; "
            "use 'none', 'auto', 'required' or a function",
            param="tool_choice",
        )
    name = _required("tool_choice", "name", choice.name)
    return NamedToolChoice(function=NamedToolChoiceFunction(name=name))


def _response_format(text: TextConfig | None) -> ResponseFormat | None:
    given = text.format if text is not None else None
    if given is None or given.type == "text":
        return None
    if given.type == "json_object":
        return ResponseFormat(type="json_object")
    if given.schema_ is None:
        raise BadRequestError(
            "text.format.schema: required when type is json_schema", param="text.format.schema"
        )
    schema = {"name": given.name or "response", "schema": given.schema_, "strict": given.strict}
    return ResponseFormat.model_validate({"type": "json_schema", "json_schema": schema})
