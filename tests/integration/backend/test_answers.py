"""Several answers to one prompt (PredictOptions.n) from a real backend serving SmolLM2.

What `n` promises: the prompt is prefilled once and copied to every answer (the backend's own count of
prompt tokens decoded says so), the answers are decoded together (their replies interleave), and answer
i is, token for token, the answer a request of its own with seed + i gets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import pytest

from localmodel.ports import free_port
from localmodel.wire import backend_pb2, backend_pb2_grpc
from tests.integration.backend.test_batching import answer, request, stub_for
from tests.support.backend_metrics import backend_metric
from tests.support.backend_process import BackendProcess

PROMPT = "Invent a name for a small red boat and say why."
SEED = 7
Answer = tuple[str, int, str]  # text, tokens, finish reason: what test_batching.answer gives


def sampled(**options: object) -> backend_pb2.PredictOptions:
    return request(PROMPT, **{"tokens": 24, "temperature": 1.0, "seed": SEED, **options})


def by_answer(replies: Iterable[backend_pb2.Reply]) -> dict[int, Answer]:
    """Each answer's text, token count and finish reason; nothing may follow an answer's last reply."""
    texts: dict[int, str] = {}
    ends: dict[int, Answer] = {}
    for reply in replies:
        assert reply.index not in ends, f"a reply of answer {reply.index} after its last"
        texts[reply.index] = texts.get(reply.index, "") + reply.message.decode()
        if reply.finish_reason:
            ends[reply.index] = (texts[reply.index], reply.tokens, reply.finish_reason)
    assert ends.keys() == texts.keys(), "every answer ends with a finish reason"
    return ends


def prompt_tokens_decoded(port: int) -> float:
    return backend_metric(port, "localmodel_backend_prompt_tokens_total")


def backend(model: Path, lanes: int) -> Iterator[tuple[backend_pb2_grpc.BackendStub, int]]:
    port = free_port()
    args = ["--model", str(model), "--context-size", "1024", "--parallel", "4", "--threads", "2"]
    with BackendProcess([*args, "--lanes", str(lanes), "--metrics-port", str(port)]) as process:
        process.wait_ready()
        for stub in stub_for(process):
            yield stub, port


@pytest.fixture(scope="module")
def one_lane(smollm2_path: Path) -> Iterator[tuple[backend_pb2_grpc.BackendStub, int]]:
    yield from backend(smollm2_path, lanes=1)


@pytest.fixture(scope="module")
def two_lanes(smollm2_path: Path) -> Iterator[tuple[backend_pb2_grpc.BackendStub, int]]:
    yield from backend(smollm2_path, lanes=2)


def test_n_answers_share_one_prefill_and_each_is_its_seed_alone(one_lane) -> None:
    stub, port = one_lane
    before = prompt_tokens_decoded(port)
    replies = list(stub.PredictStream(sampled(n=3)))
    decoded = prompt_tokens_decoded(port) - before
    answers = by_answer(replies)
    assert sorted(answers) == [0, 1, 2]
    prompt_tokens = replies[-1].prompt_tokens
    assert 0 < decoded <= prompt_tokens, f"the prompt ({prompt_tokens} tokens) decoded once, not {decoded}"
    arrival = [reply.index for reply in replies]
    assert arrival != sorted(arrival), "the answers are decoded together, their replies interleaved"
    assert len({text for text, _, _ in answers.values()}) == 3, "seeds 7, 8, 9: three different answers"
    alone = [answer(stub, sampled(seed=SEED + i)) for i in range(3)]
    assert [answers[i] for i in range(3)] == alone


def test_more_answers_than_slots_take_the_slots_as_they_free(one_lane) -> None:
    stub, _ = one_lane
    answers = by_answer(stub.PredictStream(sampled(n=6, tokens=12)))
    assert sorted(answers) == list(range(6))
    assert [answers[i] for i in range(6)] == [
        answer(stub, sampled(seed=SEED + i, tokens=12)) for i in range(6)
    ]


def test_answers_split_over_two_lanes_are_still_their_seeds_alone(two_lanes) -> None:
    stub, _ = two_lanes  # two slots a lane: answers 0 and 1 share one prefill, answer 2 has its own
    answers = by_answer(stub.PredictStream(sampled(n=3)))
    assert [answers[i] for i in range(3)] == [answer(stub, sampled(seed=SEED + i)) for i in range(3)]


def test_greedy_answers_are_all_the_greedy_answer(one_lane) -> None:
    stub, _ = one_lane
    answers = by_answer(stub.PredictStream(sampled(n=2, temperature=0)))
    assert answers[0] == answers[1] == answer(stub, sampled(temperature=0))


def test_leaving_a_stream_of_answers_stops_them_all(one_lane) -> None:
    stub, _ = one_lane
    stream = stub.PredictStream(sampled(n=3, tokens=400, ignore_eos=True))
    next(stream)
    stream.cancel()
    deadline = time.monotonic() + 10
    while stub.Status(backend_pb2.HealthMessage()).scheduler.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stub.Status(backend_pb2.HealthMessage()).scheduler.running == 0


@pytest.mark.parametrize(
    ("call", "n", "message"),
    [
        ("Predict", 2, "call PredictStream"),  # one Reply holds one answer
        ("PredictStream", 129, "n: between 1 and 128"),
    ],
)
def test_n_that_cannot_be_answered_is_invalid(one_lane, call: str, n: int, message: str) -> None:
    stub, _ = one_lane
    with pytest.raises(grpc.RpcError) as raised:
        if call == "Predict":
            stub.Predict(sampled(n=n))
        else:
            list(stub.PredictStream(sampled(n=n)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()
