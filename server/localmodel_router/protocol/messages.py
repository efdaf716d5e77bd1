"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API (request, message, stream
events, token count, error).

Content blocks of a type this router cannot use still parse (as `UnsupportedBlock`), so that the
refusal is a 400 naming the block and what is supported, not a validation error about union tags.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from localmodel_router.protocol.common import INT32_MAX

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class AnthropicRequest(BaseModel):
    # Newer clients send parameters (thinking, service_tier, cache_control, ...) this router ignores.
    model_config = ConfigDict(extra="ignore")


class TextBlock(AnthropicRequest):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(AnthropicRequest):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class UnsupportedBlock(AnthropicRequest):
    """Any other block (image, document, thinking, server tools, ...): refused when translated."""

    type: str


def _block_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("text", "tool_use", "tool_result") else "unsupported"


def _result_block_kind(value: Any) -> str:
    return "text" if _block_kind(value) == "text" else "unsupported"


# What a tool result may hold: text (anything else is refused, as in messages).
ResultBlock = Annotated[
    Annotated[TextBlock, Tag("text")] | Annotated[UnsupportedBlock, Tag("unsupported")],
    Discriminator(_result_block_kind),
]


class ToolResultBlock(AnthropicRequest):
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: str | list[ResultBlock] = ""
    is_error: bool = False


InputBlock = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[UnsupportedBlock, Tag("unsupported")],
    Discriminator(_block_kind),
]


class InputMessage(AnthropicRequest):
    role: Literal["user", "assistant"]
    content: str | list[InputBlock]


class ToolDefinition(AnthropicRequest):
    # The same name rule as OpenAI's functions, which these become.
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=dict)
    type: str | None = None  # "custom" or absent; Anthropic's server tools (web search, ...) are refused


class ToolChoice(AnthropicRequest):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False  # accepted: a constrained answer holds one call anyway


class OutputFormat(AnthropicRequest):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(AnthropicRequest):
    format: OutputFormat | None = None  # structured output; `effort` and the like are ignored


class CountTokensRequest(AnthropicRequest):
    """What makes a Messages request's prompt: the body of count_tokens, and the start of a message's."""

    model: str
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[InputBlock] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1, le=INT32_MAX)
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=INT32_MAX)
    stream: bool = False
    metadata: dict[str, Any] | None = None  # accepted and ignored


class MessageTokensCount(BaseModel):
    """count_tokens' answer: the prompt's tokens, as `usage.input_tokens` of the same request counts them."""

    input_tokens: int


class MessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextBlock | ToolUseBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: MessageUsage


# Stream events, in the order they are sent: message_start, then per content block a start, deltas and a
# stop (ping after the first start), then message_delta and message_stop.


class StreamEvent(BaseModel):
    """An event whose `type` is also its SSE event name."""

    type: str


class MessageStart(StreamEvent):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStart(StreamEvent):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: TextBlock | ToolUseBlock


class Ping(StreamEvent):
    type: Literal["ping"] = "ping"


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDelta(StreamEvent):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: TextDelta | InputJsonDelta


class ContentBlockStop(StreamEvent):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class StopDetails(BaseModel):
    stop_reason: StopReason
    stop_sequence: str | None = None


class MessageDelta(StreamEvent):
    type: Literal["message_delta"] = "message_delta"
    delta: StopDetails
    usage: MessageUsage  # cumulative totals for the whole message


class MessageStop(StreamEvent):
    type: Literal["message_stop"] = "message_stop"


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(StreamEvent):
    """The body of an error response, and the event that ends a stream that failed."""

    type: Literal["error"] = "error"
    error: ErrorDetail
