"""The Piper backend as a real process over gRPC on loopback, speaking the en_US-joe-medium voice."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localmodel.wire import backend_pb2, backend_pb2_grpc
from tests.support.backend_process import BackendProcess
from tests.support.models import require_model

PIPER = "localmodel_piper"
SAMPLE_RATE = 22050  # en_US-joe-medium's
TWO_SENTENCES = "Hello there. This is a test of the Piper voice."
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def voice_dir() -> Path:
    return require_model("piper")


@pytest.fixture(scope="module")
def speaker(voice_dir: Path) -> Iterator[backend_pb2_grpc.BackendStub]:
    """One backend started with the voice directory, shared by the tests that only speak."""
    with BackendProcess(["--model", str(voice_dir), "--threads", "2"], module=PIPER) as backend:
        backend.wait_ready(timeout=60)
        with grpc.insecure_channel(backend.address) as channel:
            yield backend_pb2_grpc.BackendStub(channel)


def spoken(replies: Iterator[backend_pb2.Reply]) -> tuple[list[bytes], int]:
    """The PCM chunks of a TTSStream and their (one) sample rate."""
    chunks, rates = [], set()
    for reply in replies:
        chunks.append(reply.audio)
        rates.add(reply.sample_rate)
    assert len(rates) == 1, rates
    return chunks, rates.pop()


def seconds(pcm: bytes, rate: int = SAMPLE_RATE) -> float:
    return len(pcm) / 2 / rate


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def refused(call: Callable[[], object]) -> grpc.RpcError:
    """The error a unary call or a whole stream ends with."""
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if not isinstance(result, backend_pb2.Result):
            list(result)
    return caught.value


def health_of(channel: grpc.Channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service)).status


def test_a_stream_sends_each_sentence_as_it_is_spoken(speaker: backend_pb2_grpc.BackendStub) -> None:
    chunks, rate = spoken(speaker.TTSStream(backend_pb2.TTSRequest(text=TWO_SENTENCES)))
    assert rate == SAMPLE_RATE
    assert len(chunks) >= 2  # one per sentence
    pcm = b"".join(chunks)
    assert 1.5 < seconds(pcm) < 10, seconds(pcm)
    assert all(rms(chunk) > 500 for chunk in chunks)  # speech, not silence (int16 full scale: 32767)


def test_any_openai_voice_name_speaks_the_one_voice(speaker: backend_pb2_grpc.BackendStub) -> None:
    for voice in ("alloy", "nova", ""):
        chunks, _ = spoken(speaker.TTSStream(backend_pb2.TTSRequest(text="Hi.", voice=voice, language="de")))
        assert chunks, voice


def test_speed_two_is_clearly_faster(speaker: backend_pb2_grpc.BackendStub) -> None:
    def length(speed: float) -> float:
        request = backend_pb2.TTSRequest(text=TWO_SENTENCES, speed=speed)
        return seconds(b"".join(spoken(speaker.TTSStream(request))[0]))

    normal, unset, fast = length(1.0), length(0.0), length(2.0)
    assert abs(unset / normal - 1) < 0.15  # 0: normal speed (durations are a little random)
    # Not 0.5: Piper rounds each phoneme (and the pause after each) up to whole frames, so halving the
    # length scale shortens short phonemes less. Measured 0.59-0.66 for this voice.
    assert 0.4 < fast / normal < 0.72, fast / normal


@pytest.mark.parametrize("speed", [5.0, 0.1, -1.0])
def test_a_speed_outside_openais_range_is_invalid(
    speaker: backend_pb2_grpc.BackendStub, speed: float
) -> None:
    error = refused(lambda: speaker.TTSStream(backend_pb2.TTSRequest(text="Hi.", speed=speed)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "speed must be between 0.25 and 4" in error.details()


def test_empty_text_is_invalid(speaker: backend_pb2_grpc.BackendStub, tmp_path: Path) -> None:
    for text in ("", "   "):
        error = refused(lambda text=text: speaker.TTSStream(backend_pb2.TTSRequest(text=text)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "text" in error.details()
        error = refused(
            lambda text=text: speaker.TTS(backend_pb2.TTSRequest(text=text, dst=str(tmp_path / "x.wav")))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = refused(lambda: speaker.TTSStream(backend_pb2.TTSRequest(text="...")))  # no words in it
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "nothing to speak" in error.details()


def test_tts_writes_a_wav_file_to_dst(speaker: backend_pb2_grpc.BackendStub, tmp_path: Path) -> None:
    dst = tmp_path / "speech.wav"
    result = speaker.TTS(backend_pb2.TTSRequest(text=TWO_SENTENCES, dst=str(dst)))
    assert result.success and result.message == str(dst)
    with wave.open(str(dst), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SAMPLE_RATE)
        pcm = wav.readframes(wav.getnframes())
    assert 1.5 < seconds(pcm) < 10 and rms(pcm) > 500
    assert [path.name for path in tmp_path.iterdir()] == ["speech.wav"]  # no partial file left behind
    assert dst.stat().st_mode & 0o777 == 0o644  # readable by the client that asked for it


def test_tts_needs_a_writable_dst(speaker: backend_pb2_grpc.BackendStub, tmp_path: Path) -> None:
    error = refused(lambda: speaker.TTS(backend_pb2.TTSRequest(text="Hi.")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "dst" in error.details()
    missing = tmp_path / "no-such-folder" / "x.wav"
    error = refused(lambda: speaker.TTS(backend_pb2.TTSRequest(text="Hi.", dst=str(missing))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "cannot write there" in error.details()


def test_a_backend_started_with_its_voice_refuses_load_model(
    speaker: backend_pb2_grpc.BackendStub, voice_dir: Path
) -> None:
    error = refused(lambda: speaker.LoadModel(backend_pb2.ModelOptions(model_file=str(voice_dir))))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "--allow-load-model" in error.details()


def test_health_turns_serving_once_a_voice_is_loaded_from_a_directory_or_its_onnx_file(
    voice_dir: Path, tmp_path: Path
) -> None:
    with BackendProcess(["--threads", "1"], module=PIPER) as backend:
        backend.wait_ready_to_connect(timeout=60)
        with grpc.insecure_channel(backend.address) as channel:
            stub = backend_pb2_grpc.BackendStub(channel)
            assert health_of(channel) == NOT_SERVING and health_of(channel, "backend.Backend") == NOT_SERVING
            error = refused(lambda: stub.TTSStream(backend_pb2.TTSRequest(text="Hi.")))
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

            # A load that fails says why and leaves the backend as it was.
            empty = tmp_path / "empty"
            empty.mkdir()
            result = stub.LoadModel(backend_pb2.ModelOptions(model_file=str(empty)))
            assert not result.success and "no Piper voice in" in result.message
            broken = tmp_path / "broken.onnx"
            broken.write_bytes(b"not a network")
            shutil.copy(next(voice_dir.glob("*.onnx.json")), tmp_path / "broken.onnx.json")
            result = stub.LoadModel(backend_pb2.ModelOptions(model_file=str(broken)))
            assert not result.success and f"onnxruntime could not load {broken}" in result.message
            assert health_of(channel) == NOT_SERVING

            # LocalAI's way: a name inside the models directory.
            result = stub.LoadModel(
                backend_pb2.ModelOptions(model=voice_dir.name, model_path=str(voice_dir.parent))
            )
            assert result.success, result.message
            assert health_of(channel) == SERVING and health_of(channel, "backend.Backend") == SERVING
            assert spoken(stub.TTSStream(backend_pb2.TTSRequest(text="Hi.")))[0]

            onnx = next(voice_dir.glob("*.onnx"))
            result = stub.LoadModel(backend_pb2.ModelOptions(model_file=str(onnx)))
            assert result.success and str(onnx) in result.message
            assert stub.Status(backend_pb2.HealthMessage()).state == backend_pb2.StatusResponse.READY
            assert spoken(stub.TTSStream(backend_pb2.TTSRequest(text="Hi.")))[0]


def exit_and_output(args: list[str]) -> tuple[int, str]:
    with tempfile.TemporaryFile() as log:
        backend = BackendProcess(args, log_file=log, module=PIPER).start()
        assert backend.process is not None
        code = backend.process.wait(timeout=60)
        log.seek(0)
        return code, log.read().decode()


def test_a_model_source_that_is_no_voice_exits_with_the_reason(voice_dir: Path, tmp_path: Path) -> None:
    code, output = exit_and_output(["--model", str(tmp_path)])
    assert code == 1 and "could not load the model" in output and "no Piper voice in" in output

    lonely = tmp_path / "lonely"
    lonely.mkdir()
    onnx = next(voice_dir.glob("*.onnx"))
    (lonely / onnx.name).symlink_to(onnx)  # the network without its config
    code, output = exit_and_output(["--model", str(lonely / onnx.name)])
    assert code == 1 and f"no voice config {onnx.name}.json beside" in output
    assert "give the directory that holds both" in output


def test_sigterm_lets_a_running_stream_finish(voice_dir: Path) -> None:
    text = " ".join(f"This is sentence number {number} of a long reading." for number in range(1, 25))
    backend = BackendProcess(["--model", str(voice_dir), "--threads", "1"], module=PIPER).start()
    try:
        backend.wait_ready(timeout=60)
        assert backend.process is not None
        with grpc.insecure_channel(backend.address) as channel:
            stub = backend_pb2_grpc.BackendStub(channel)
            stream = stub.TTSStream(backend_pb2.TTSRequest(text=text))
            chunks = [next(stream).audio]
            backend.process.send_signal(signal.SIGTERM)
            stopping_seen = _wait_for_shutdown(channel)
            # A call that arrives now is refused: the router may send it to another replica.
            late = refused(lambda: stub.TTSStream(backend_pb2.TTSRequest(text="Hi.")))
            assert late.code() == grpc.StatusCode.UNAVAILABLE, late.details()
            chunks += [reply.audio for reply in stream]
            finished = time.monotonic()
        assert len(chunks) == 24  # every sentence, though the stop began after the first
        assert finished > stopping_seen
        assert backend.process.wait(timeout=30) == 0
    finally:
        backend.stop()


def _wait_for_shutdown(channel: grpc.Channel) -> float:
    """When the backend, stopping, first reports NOT_SERVING (or no longer answers)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if health_of(channel) == NOT_SERVING:
                return time.monotonic()
        except grpc.RpcError:
            return time.monotonic()
        time.sleep(0.01)
    raise AssertionError("the backend did not begin to stop within 10 s of SIGTERM")
