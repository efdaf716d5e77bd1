"""The prompt cache of a real backend serving SmolLM2: how much of a slot's earlier prompt a request reuses
(`--prompt-cache exact`, the default, against `prefix`), and that exact mode's greedy answers stay.

One slot, so that every request lands in the slot the previous one left. A fresh answer is one whose
prompt shares no whole chunk with what the slot holds: in `exact` mode nothing of it is reused then.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localmodel.ports import free_port
from localmodel.wire import backend_pb2, backend_pb2_grpc
from localmodel_llamacpp.decoder import PREFILL_CHUNK
from tests.integration.backend.test_batching import request, stub_for
from tests.support.backend_metrics import backend_metric
from tests.support.backend_process import BackendProcess

# A shared start of about 100 tokens: one whole chunk and a part of the next.
SHARED = (
    "Read this note first. The lighthouse keeper wrote that the storm came in from the west at dusk, "
    "that the lamp failed twice before midnight, that two fishing boats found the harbour by the sound "
    "of the bell alone, and that by morning the sea was calm again and the gulls were back on the pier. "
)
QUESTIONS = ["What failed twice?", "Where did the storm come from?", "How did the boats find the harbour?"]
UNRELATED = "Name three colours."


def backend_with(
    model: Path, mode: str, ram_mib: int = 0, more: tuple[str, ...] = ()
) -> Iterator[backend_pb2_grpc.BackendStub]:
    """One slot; `ram_mib`: the host store of prompts (off, so what a slot alone keeps is measured)."""
    args = ["--model", str(model), "--context-size", "1024", "--parallel", "1", "--threads", "2", *more]
    with BackendProcess([*args, "--prompt-cache", mode, "--prompt-cache-ram", str(ram_mib)]) as backend:
        backend.wait_ready()
        yield from stub_for(backend)


@pytest.fixture(scope="module")
def exact(smollm2_path: Path) -> Iterator[backend_pb2_grpc.BackendStub]:
    yield from backend_with(smollm2_path, "exact")


@pytest.fixture(scope="module")
def prefix(smollm2_path: Path) -> Iterator[backend_pb2_grpc.BackendStub]:
    yield from backend_with(smollm2_path, "prefix")


def ask(stub: backend_pb2_grpc.BackendStub, content: str) -> tuple[str, int, int]:
    """(answer, prompt tokens, prompt tokens decoded: the rest was reused)."""
    reply = stub.Predict(request(content, tokens=24))
    decoded = stub.GetMetrics(backend_pb2.MetricsRequest()).prompt_tokens_processed
    return reply.message.decode(), reply.prompt_tokens, decoded


def fresh_and_reused(stub: backend_pb2_grpc.BackendStub) -> list[tuple[tuple[str, int, int], ...]]:
    """Per question: (asked after an unrelated prompt, asked after the shared note with another question)."""
    found = []
    for index, question in enumerate(QUESTIONS):
        ask(stub, UNRELATED)
        fresh = ask(stub, SHARED + question)
        ask(stub, SHARED + QUESTIONS[index - 1])
        found.append((fresh, ask(stub, SHARED + question)))
    return found


@pytest.fixture(scope="module")
def exact_runs(exact) -> list[tuple[tuple[str, int, int], ...]]:
    return fresh_and_reused(exact)


def test_exact_mode_reuses_whole_chunks_only_and_answers_as_on_a_fresh_slot(exact_runs) -> None:
    for (fresh_text, prompt_tokens, fresh_decoded), (text, _, decoded) in exact_runs:
        assert fresh_decoded == prompt_tokens  # the chat preamble shared with UNRELATED is < one chunk
        assert decoded == prompt_tokens - PREFILL_CHUNK  # the note's first whole chunk, no more
        assert text == fresh_text


def test_prefix_mode_reuses_the_whole_shared_start(exact_runs, prefix) -> None:
    exact_decoded = [reused[2] for _, reused in exact_runs]
    for (fresh, (_, _, decoded)), whole_chunks in zip(fresh_and_reused(prefix), exact_decoded, strict=True):
        # Everything up to where the questions differ is kept: only the question and the chat
        # template's end are decoded, far less than exact mode's whole-chunk reuse leaves.
        assert decoded <= 16 < whole_chunks
        # The chat preamble that the unrelated prompt shares is kept too (exact mode keeps none of it).
        assert fresh[2] < fresh[1]
        # The answers are not compared: a reuse off the chunk grid may turn a near-tie (README).


def test_a_prompt_the_slot_holds_whole_is_not_decoded_again(exact) -> None:
    # The slot keeps the logits after the prompt it decoded: asked again, the prompt costs nothing and
    # the first token is picked from those logits, exactly as from the decoded row.
    ask(exact, UNRELATED)
    first = ask(exact, SHARED + QUESTIONS[0])
    assert first[2] == first[1]  # after another prompt: decoded whole
    assert ask(exact, SHARED + QUESTIONS[0]) == (first[0], first[1], 0)
    sampled = request(UNRELATED, tokens=16, temperature=0.9, seed=3, logprobs=1, top_logprobs=3)
    decoded = exact.Predict(sampled)
    held = exact.Predict(sampled)  # the same seed: the same pick from the kept logits
    assert exact.GetMetrics(backend_pb2.MetricsRequest()).prompt_tokens_processed == 0
    assert (held.message, held.logprobs) == (decoded.message, decoded.logprobs)
    assert held.logprobs  # the first token's log probabilities come from the kept logits too
    grammar = request(UNRELATED, tokens=12, grammar='root ::= "Red, " [a-z]+ ", blue."')
    assert exact.Predict(grammar).message == exact.Predict(grammar).message  # a grammar applies to them
    ask(exact, UNRELATED + " Again.")  # another prompt in the slot: what it held is gone
    assert ask(exact, SHARED + QUESTIONS[0])[2] == first[1]


STORED_METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def stored(smollm2_path: Path) -> Iterator[backend_pb2_grpc.BackendStub]:
    yield from backend_with(smollm2_path, "exact", 64, ("--metrics-port", str(STORED_METRICS_PORT)))


def restored() -> float:
    return backend_metric(STORED_METRICS_PORT, "localmodel_backend_prompts_restored_total")


def test_a_prompt_whose_slot_was_taken_comes_back_from_host_memory(stored, exact) -> None:
    fresh = ask(stored, SHARED + QUESTIONS[0])
    assert fresh[2] == fresh[1]
    ask(stored, UNRELATED)  # takes the one slot: the note and its question go to host memory
    before = restored()
    assert ask(stored, SHARED + QUESTIONS[0]) == (fresh[0], fresh[1], 0)  # restored whole, nothing decoded
    assert restored() == before + 1
    # Another question after the note: its first whole chunk comes back from host memory (exact mode
    # keeps whole chunks), the rest is decoded; the answer is the one a fresh slot gives.
    ask(stored, UNRELATED)
    other = ask(stored, SHARED + QUESTIONS[1])
    assert other[2] == other[1] - PREFILL_CHUNK
    ask(exact, UNRELATED)  # a slot that holds nothing of it, no host store: decoded whole
    assert other[0] == ask(exact, SHARED + QUESTIONS[1])[0]
    ask(stored, UNRELATED + " Once more.")
    assert ask(stored, SHARED + QUESTIONS[1])[0] == other[0]


def test_the_host_store_is_off_with_no_memory(exact) -> None:
    first = ask(exact, SHARED + QUESTIONS[2])
    ask(exact, UNRELATED)
    assert ask(exact, SHARED + QUESTIONS[2])[2] == first[1]  # decoded again: nothing was kept
