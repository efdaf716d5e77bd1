"""Cancellation, a one-slot backend serving in arrival order, and graceful shutdown, seen from a client."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc

from localmodel.wire import backend_pb2, backend_pb2_grpc
from tests.support.backend_process import BackendProcess
from tests.support.waiting import wait_until

LONG = backend_pb2.PredictOptions(prompt="Count slowly:", tokens=1500, temperature=0, ignore_eos=True)


def status(backend) -> backend_pb2.StatusResponse:
    return backend.Status(backend_pb2.HealthMessage())


def test_cancelling_a_stream_stops_generation_at_once(chat) -> None:
    stream = chat.PredictStream(LONG)
    received = [next(stream) for _ in range(3)]
    assert all(r.message for r in received)
    stream.cancel()

    # Generous: on a loaded machine one token can take seconds; the token count below is the proof.
    wait_until(lambda: status(chat).scheduler.running == 0, "nothing running", timeout=15.0)
    generated = chat.GetMetrics(backend_pb2.MetricsRequest()).tokens_generated
    # 1500 tokens were asked for; generation stopped within a few tokens of the cancel.
    assert 3 <= generated < 20, generated
    # Idle again: the next request is served right away.
    assert chat.Predict(backend_pb2.PredictOptions(prompt="Hi", tokens=2)).tokens == 2


def test_requests_wait_their_turn_and_status_counts_them(smollm2_path: Path) -> None:
    args = ["--model", str(smollm2_path), "--context-size", "512", "--parallel", "1"]
    with BackendProcess(args) as backend:
        backend.wait_ready()
        with grpc.insecure_channel(backend.address) as channel:
            _one_slot_serves_in_arrival_order(backend_pb2_grpc.BackendStub(channel))


def _one_slot_serves_in_arrival_order(chat) -> None:
    finished: dict[str, float] = {}

    def run(name: str, request: backend_pb2.PredictOptions) -> None:
        chat.Predict(request)
        finished[name] = time.monotonic()

    first = backend_pb2.PredictOptions(prompt="Once upon a time", tokens=150, temperature=0, ignore_eos=True)
    second = backend_pb2.PredictOptions(prompt="Hello", tokens=5, temperature=0)
    threads = [threading.Thread(target=run, args=("first", first))]
    threads[0].start()
    wait_until(lambda: status(chat).scheduler.running == 1, "one request running")
    threads.append(threading.Thread(target=run, args=("second", second)))
    threads[1].start()

    wait_until(lambda: status(chat).scheduler.waiting == 1, "one request waiting")
    busy = status(chat)
    assert busy.state == backend_pb2.StatusResponse.BUSY
    assert (busy.scheduler.running, busy.scheduler.slots, busy.scheduler.mode) == (1, 1, "batching")
    assert busy.memory.total > busy.memory.breakdown["model"] > 50_000_000

    for thread in threads:
        thread.join(timeout=60)
    assert finished["first"] < finished["second"], "served in arrival order"
    idle = status(chat)
    assert (idle.state, idle.scheduler.running, idle.scheduler.waiting) == (
        backend_pb2.StatusResponse.READY,
        0,
        0,
    )


def test_sigterm_finishes_the_stream_in_flight_then_exits(smollm2_path: Path) -> None:
    backend = BackendProcess(["--model", str(smollm2_path), "--context-size", "512"]).start()
    try:
        backend.wait_ready()
        with grpc.insecure_channel(backend.address) as channel:
            request = backend_pb2.PredictOptions(
                prompt="The ocean", tokens=120, temperature=0, ignore_eos=True
            )
            stream = backend_pb2_grpc.BackendStub(channel).PredictStream(request)
            replies = [next(stream)]
            assert backend.process is not None
            backend.process.send_signal(signal.SIGTERM)
            replies.extend(stream)
        assert replies[-1].tokens == 120 and replies[-1].finish_reason == "length"
        assert backend.process.wait(timeout=30) == 0
    finally:
        backend.stop()


def test_a_full_waiting_queue_refuses_with_resource_exhausted(smollm2_path: Path) -> None:
    args = ["--model", str(smollm2_path), "--context-size", "512", "--parallel", "1", "--max-waiting", "1"]
    with BackendProcess(args) as backend:
        backend.wait_ready()
        with grpc.insecure_channel(backend.address) as channel:
            chat = backend_pb2_grpc.BackendStub(channel)
            running = chat.Predict.future(LONG)
            wait_until(lambda: status(chat).scheduler.running == 1, "the one slot taken")
            waiting = chat.Predict.future(LONG)
            wait_until(lambda: status(chat).scheduler.waiting == 1, "the one place in the queue taken")
            try:
                refused = chat.Predict.future(backend_pb2.PredictOptions(prompt="Hi", tokens=2))
                error = refused.exception(timeout=30)
                assert isinstance(error, grpc.RpcError)
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "1 requests are waiting" in error.details()
            finally:
                running.cancel()
                waiting.cancel()
            wait_until(lambda: status(chat).scheduler.running == 0, "nothing running", timeout=15.0)
            assert chat.Predict(backend_pb2.PredictOptions(prompt="Hi", tokens=2)).tokens == 2
