"""Embedding and TokenizeString on the real SmolLM2."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import llama_cpp
import pytest

from localmodel.wire import backend_pb2

SMOLLM2_EMBEDDING_SIZE = 576  # n_embd of SmolLM2-135M


def embed(embedder, text: str) -> list[float]:
    return list(embedder.Embedding(backend_pb2.PredictOptions(embeddings=text)).embeddings)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embedding_is_a_normalised_vector_of_the_model_size(embedder) -> None:
    vector = embed(embedder, "The cat sat on the mat.")
    assert len(vector) == SMOLLM2_EMBEDDING_SIZE
    assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-4)


def test_similar_texts_are_closer_than_unrelated_ones(embedder) -> None:
    cat = embed(embedder, "The cat sat on the mat.")
    assert cosine(cat, embed(embedder, "The cat sat on the mat.")) == pytest.approx(1.0, abs=1e-5)
    similar = cosine(cat, embed(embedder, "A kitten was sitting on the rug."))
    unrelated = cosine(cat, embed(embedder, "Quarterly tax returns must be filed by April."))
    assert similar > unrelated


def test_embedding_tokens_are_accepted(embedder) -> None:
    tokens = embedder.TokenizeString(backend_pb2.PredictOptions(prompt="The cat sat on the mat.")).tokens
    from_tokens = list(embedder.Embedding(backend_pb2.PredictOptions(embedding_tokens=tokens)).embeddings)
    assert cosine(from_tokens, embed(embedder, "The cat sat on the mat.")) == pytest.approx(1.0, abs=1e-5)


def test_embedding_needs_a_model_loaded_for_embeddings(chat) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        chat.Embedding(backend_pb2.PredictOptions(embeddings="hello"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "embeddings" in caught.value.details()


def test_tokenize_round_trips_through_the_model_vocabulary(chat, smollm2_path: Path) -> None:
    text = "Hello world, this is localmodel speaking: 42 tokens/s!"
    reply = chat.TokenizeString(backend_pb2.PredictOptions(prompt=text))
    assert reply.length == len(reply.tokens) > 5
    vocabulary = llama_cpp.Llama(str(smollm2_path), vocab_only=True, verbose=False)
    assert vocabulary.detokenize(list(reply.tokens)).decode() == text


@pytest.mark.parametrize("token", [-1, 49152, 1_000_000_000])
def test_a_token_outside_the_vocabulary_is_refused_and_the_backend_still_serves(embedder, token: int) -> None:
    # llama.cpp aborts the whole process on such an id; the backend must refuse it first.
    with pytest.raises(grpc.RpcError) as caught:
        embedder.Embedding(backend_pb2.PredictOptions(embedding_tokens=[1, token]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"token id {token} is outside the model's vocabulary (0 to 49151)" in caught.value.details()
    assert len(embed(embedder, "still serving")) == SMOLLM2_EMBEDDING_SIZE


def test_tokenizing_chat_messages_counts_the_prompt_predict_decodes(chat) -> None:
    """With use_tokenizer_template, TokenizeString renders the messages with the model's chat template
    (and BOS) as Predict does: its count is Predict's prompt_tokens (what count_tokens answers)."""
    messages = [
        backend_pb2.Message(role="system", content="You are terse."),
        backend_pb2.Message(role="user", content="Name a colour."),
    ]
    request = backend_pb2.PredictOptions(messages=messages, use_tokenizer_template=True, tokens=1)
    counted = chat.TokenizeString(request)
    assert counted.length == len(counted.tokens) == chat.Predict(request).prompt_tokens
    plain = chat.TokenizeString(backend_pb2.PredictOptions(prompt="Name a colour.")).length
    assert counted.length > plain + 5  # the template's own tokens around the two messages
