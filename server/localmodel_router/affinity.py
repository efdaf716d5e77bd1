"""The part of a generation request that decides its replica under prefix-hash balancing.

A conversation's KV cache holds its system prompt and first user message; every later turn starts with
them. So the key is the text before the first user message (system prompts, shared by many users) plus
the first `chars` characters of that message (which tell conversations apart). A raw prompt's key is its
first `chars` characters after the same reasoning: the start is what a later request shares.
"""

from __future__ import annotations

from localmodel.wire import backend_pb2


def prefix_key(request: backend_pb2.PredictOptions, chars: int) -> str:
    if not request.messages:
        return request.prompt[:chars]
    before_user: list[str] = []
    for message in request.messages:
        if message.role == "user":
            return "\x00".join([*before_user, message.content[:chars]])
        before_user.append(f"{message.role}:{message.content}")
    return "\x00".join(before_user)[:chars]
