"""Pieces shared by several endpoint families."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class OpenAIRequest(BaseModel):
    # Newer SDKs send parameters this router does not know yet; ignoring them keeps old routers usable.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(BaseModel):
    include_usage: bool = False


# The backend contract carries counts, ids and seeds as int32: a bigger value would fail on the wire (a
# 500), so it is refused here (400 naming the parameter).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MOST_CHOICES = 128  # n: a bound that makes sense, far above what sampling several answers needs


def _token_ids_in_range(value: Any) -> Any:
    """A prompt or input given as token ids (a list, or a list of lists) holds only valid ids."""
    lists = value if value and isinstance(value, list) and isinstance(value[0], list) else [value]
    for ids in lists:
        if isinstance(ids, list):
            for token in ids:
                if isinstance(token, int) and not 0 <= token <= INT32_MAX:
                    raise ValueError(f"token ids are between 0 and {INT32_MAX}, got {token}")
    return value


# A text, texts, token ids or lists of token ids (completions' prompt, embeddings' input).
TextsOrTokens = Annotated[str | list[str] | list[int] | list[list[int]], AfterValidator(_token_ids_in_range)]
TokenLimit = Field(default=None, ge=1, le=INT32_MAX)

MOST_BIASES = 1024  # logit_bias entries: far above what steering a few tokens needs


def _biases_in_range(value: dict[str, float] | None) -> dict[str, float] | None:
    """OpenAI's logit_bias: token ids (as JSON object keys) → a bias between -100 and 100."""
    if value is None:
        return None
    if len(value) > MOST_BIASES:
        raise ValueError(f"at most {MOST_BIASES} token biases, got {len(value)}")
    for token, bias in value.items():
        if not token.isdigit() or int(token) > INT32_MAX:
            raise ValueError(f"keys are token ids (0 to {INT32_MAX}), got {token!r}")
        if not -100 <= bias <= 100:
            raise ValueError(f"biases are between -100 and 100, got {bias} for token {token}")
    return value


LogitBias = Annotated[dict[str, float] | None, AfterValidator(_biases_in_range)]

Temperature = Field(default=None, ge=0, le=2)
TopP = Field(default=None, ge=0, le=1)
Penalty = Field(default=None, ge=-2, le=2)


class GenerationRequest(OpenAIRequest):
    """The fields chat and text completions share."""

    model: str
    temperature: float | None = Temperature
    top_p: float | None = TopP
    seed: int | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Penalty
    frequency_penalty: float | None = Penalty
    logit_bias: LogitBias = None
    n: int = Field(default=1, ge=1, le=MOST_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted and ignored


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


def usage(prompt_tokens: int, completion_tokens: int = 0) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def new_id(prefix: str, separator: str = "-") -> str:
    """A unique id in the API's style: `chatcmpl-…` (OpenAI's completions), `resp_…`, `msg_…` (Responses,
    Anthropic)."""
    return f"{prefix}{separator}{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class TopLogprob(BaseModel):
    token: str
    logprob: float | None  # None only for a prompt's first token (completions' echo)
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    """A generated token's log probability and the most likely alternatives at its place (chat's shape,
    which the backend sends; completions' older shape is made from it)."""

    top_logprobs: list[TopLogprob] = []
