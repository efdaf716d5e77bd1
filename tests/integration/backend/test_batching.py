"""Continuous batching, seen from gRPC clients of a real backend serving SmolLM2 with several slots.

The proof that requests really share decode steps is the backend's own Status (running > 1 while they
run); the proof that they do not disturb each other is that each gets, token for token, the answer it
gets alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from localmodel.ports import free_port
from localmodel.wire import backend_pb2, backend_pb2_grpc
from tests.support.backend_process import BackendProcess

PROMPTS = ["Name three colours.", "Write a haiku about the sea.", "What is 2+2?", "Tell me about dragons."]
CITY = 'root ::= "{\\"city\\": \\"" [A-Z] [a-z]+ "\\"}"'


def request(content: str, **options: object) -> backend_pb2.PredictOptions:
    options = {"tokens": 48, "temperature": 0, **options}
    return backend_pb2.PredictOptions(
        messages=[backend_pb2.Message(role="user", content=content)], use_tokenizer_template=True, **options
    )


def stub_for(backend: BackendProcess) -> Iterator[backend_pb2_grpc.BackendStub]:
    with grpc.insecure_channel(backend.address) as channel:
        yield backend_pb2_grpc.BackendStub(channel)


METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def batched(smollm2_path: Path) -> Iterator[backend_pb2_grpc.BackendStub]:
    args = ["--model", str(smollm2_path), "--context-size", "1024", "--parallel", "4", "--threads", "2"]
    args += ["--metrics-port", str(METRICS_PORT)]
    with BackendProcess(args) as backend:
        backend.wait_ready()
        yield from stub_for(backend)


def answer(stub: backend_pb2_grpc.BackendStub, options: backend_pb2.PredictOptions) -> tuple[str, int, str]:
    reply = stub.Predict(options)
    return reply.message.decode(), reply.tokens, reply.finish_reason


def together(
    stub: backend_pb2_grpc.BackendStub, requests: list[backend_pb2.PredictOptions]
) -> tuple[list[tuple[str, int, str]], int, int]:
    """Answers of requests sent at once, and the most requests Status saw running and waiting."""
    running = waiting = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal running, waiting
        while not done.is_set():
            scheduler = stub.Status(backend_pb2.HealthMessage()).scheduler
            running, waiting = max(running, scheduler.running), max(waiting, scheduler.waiting)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda r: answer(stub, r), requests))
    done.set()
    watcher.join()
    return answers, running, waiting


def test_concurrent_greedy_requests_get_exactly_their_answers_alone(batched) -> None:
    requests = [request(p) for p in PROMPTS]
    alone = [answer(batched, r) for r in requests]
    answers, most, _ = together(batched, requests)
    assert most >= 2, "the requests never ran at the same time"
    assert answers == alone
    status = batched.Status(backend_pb2.HealthMessage()).scheduler
    assert (status.mode, status.slots) == ("batching", 4)


def test_different_sampling_and_a_grammar_share_a_batch(batched) -> None:
    requests = [
        request(PROMPTS[0]),
        request(PROMPTS[1], temperature=0.9, top_p=0.9, seed=7),
        request(PROMPTS[3], temperature=0.7, top_k=20, repeat_penalty=1.3, seed=11),
        request("Name a city in France, as JSON.", grammar=CITY),
    ]
    alone = [answer(batched, r) for r in requests]
    answers, most, _ = together(batched, requests)
    assert most >= 2
    assert answers == alone  # seeded sampling is reproducible in a batch too
    city = json.loads(answers[3][0])
    assert set(city) == {"city"} and city["city"][0].isupper()
    assert answers[1] != answer(batched, request(PROMPTS[1], temperature=0.9, top_p=0.9, seed=8))


def test_cancelling_one_sequence_leaves_the_others_untouched(batched) -> None:
    others = [request(PROMPTS[0], tokens=64), request(PROMPTS[3], tokens=64)]
    alone = [answer(batched, r) for r in others]
    doomed = batched.PredictStream(request("Count from one to a thousand.", tokens=500, ignore_eos=True))
    received = [next(doomed) for _ in range(3)]
    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(answer, batched, r) for r in others]
        doomed.cancel()
        answers = [future.result() for future in pending]
    assert all(r.message for r in received)
    assert answers == alone
    assert batched.GetMetrics(backend_pb2.MetricsRequest()).tokens_generated < 500


@pytest.mark.parametrize("lanes", [1, 2])
def test_more_requests_than_slots_wait_and_all_complete(smollm2_path: Path, lanes: int) -> None:
    # One lane: both slots share each step. Two: a slot each, decoding side by side on a thread each.
    args = ["--model", str(smollm2_path), "--context-size", "512", "--parallel", "2", "--threads", "2"]
    with BackendProcess([*args, "--lanes", str(lanes)]) as backend:
        backend.wait_ready()
        for stub in stub_for(backend):
            requests = [request(p, tokens=32) for p in PROMPTS + PROMPTS[:2]]
            alone = [answer(stub, r) for r in requests]
            answers, most, waiting = together(stub, requests)
            assert answers == alone
            assert most == 2  # never more than the slots
            assert waiting >= 1  # the rest queued


def test_a_reused_prefix_is_not_decoded_again_and_the_answer_stays(batched) -> None:
    history = "Here is a long story. " + " ".join(f"Sentence {i} of the story goes on." for i in range(40))
    first = request(history + " Summarise it.", tokens=16)
    original = answer(batched, first)
    prompt_tokens = batched.GetMetrics(backend_pb2.MetricsRequest()).prompt_tokens_processed
    assert prompt_tokens > 200
    again = answer(batched, first)  # a slot holds this prompt: its whole chunks are kept
    reused = batched.GetMetrics(backend_pb2.MetricsRequest()).prompt_tokens_processed
    assert again == original
    assert reused < 64 <= prompt_tokens - reused


def test_a_model_loaded_for_embeddings_is_served_one_at_a_time(embedder) -> None:
    scheduler = embedder.Status(backend_pb2.HealthMessage()).scheduler
    assert (scheduler.mode, scheduler.slots) == ("sequential", 1)


def test_prometheus_metrics_speak_the_inference_gateway_protocol(batched) -> None:
    stream = batched.PredictStream(request("Count from one to a thousand.", tokens=300, ignore_eos=True))
    next(stream)
    text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
    stream.cancel()
    for name, value in [
        ("vllm:num_requests_running", "1.0"),
        ("vllm:num_requests_waiting", "0.0"),
        ("localmodel_backend_requests_running", "1.0"),
        ("localmodel_backend_slots", "4.0"),
        ("localmodel_backend_lanes", "2.0"),  # the default for a small model on 2+ CPU threads
    ]:
        assert f"{name} {value}" in text, name
    usage = float(
        next(line for line in text.splitlines() if line.startswith("vllm:kv_cache_usage_perc ")).split()[1]
    )
    assert 0 < usage < 1
