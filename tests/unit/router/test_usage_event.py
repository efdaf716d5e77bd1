"""The usage event that ends a stream whose client asked for it, the same for chat and text completions."""

from __future__ import annotations

import json

import pytest

from localmodel_router.protocol.chat import ChatCompletionChunk, ChatCompletionRequest
from localmodel_router.protocol.completions import Completion, CompletionRequest
from localmodel_router.serving import usage_event

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
TEXT = {"model": "m", "prompt": "Hi", "stream": True}


@pytest.mark.parametrize(
    ("request_type", "fields", "chunk_type", "object_name"),
    [
        (ChatCompletionRequest, CHAT, ChatCompletionChunk, "chat.completion.chunk"),
        (CompletionRequest, TEXT, Completion, "text_completion"),
    ],
)
def test_a_stream_that_asked_for_usage_ends_with_its_tokens_and_no_choices(
    request_type: type[ChatCompletionRequest] | type[CompletionRequest],
    fields: dict[str, object],
    chunk_type: type[ChatCompletionChunk] | type[Completion],
    object_name: str,
) -> None:
    request = request_type.model_validate({**fields, "stream_options": {"include_usage": True}})
    event = usage_event(request, chunk_type, "id-1", 7, 3, 5)
    assert event is not None and event.startswith("data: ") and event.endswith("\n\n")
    chunk = json.loads(event.removeprefix("data: "))
    assert chunk["id"] == "id-1" and chunk["created"] == 7 and chunk["model"] == "m"
    assert chunk["object"] == object_name and chunk["choices"] == []
    assert chunk["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


@pytest.mark.parametrize("stream_options", [None, {"include_usage": False}])
def test_no_usage_event_unless_asked(stream_options: dict[str, bool] | None) -> None:
    request = CompletionRequest.model_validate({**TEXT, "stream_options": stream_options})
    assert usage_event(request, Completion, "id-1", 7, 3, 5) is None
