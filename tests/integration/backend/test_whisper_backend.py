"""The faster-whisper backend (`python -m localmodel_whisper`) as a real process over loopback gRPC,
transcribing real speech: sentences spoken by the Piper voice, heard by Whisper tiny (English)."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localmodel.ports import free_port
from localmodel.wire import backend_pb2, backend_pb2_grpc
from tests.support.backend_process import BackendProcess
from tests.support.models import require_model
from tests.support.transcripts import word_error_rate

MODULE = "localmodel_whisper"
THREADS = ["--threads", "2"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NANOSECONDS = 1_000_000_000
SENTENCES = {
    "fox": "The quick brown fox jumps over the lazy dog.",
    "report": "Please send the weekly report to the whole team before Friday morning.",
}
# About ten seconds of speech: long enough to still be transcribing when the backend is told to stop.
LONG = (
    "Local models answer on Kubernetes. Every engine runs in its own process, and the router sends each "
    "request to a replica that has room for it. When a pod stops, it finishes what it started first."
)


def wav_seconds(audio: bytes) -> float:
    with wave.open(io.BytesIO(audio)) as clip:
        return clip.getnframes() / clip.getframerate()


@pytest.fixture(scope="module")
def whisper_path() -> Path:
    return require_model("whisper")


@pytest.fixture(scope="module")
def speech() -> dict[str, bytes]:
    """Each sentence spoken by the Piper voice, as a WAV file's bytes (22,050 Hz; the backend resamples)."""
    from piper import PiperVoice

    voice = PiperVoice.load(str(require_model("piper") / "en_US-joe-medium.onnx"))
    clips = {}
    for name, text in {**SENTENCES, "long": LONG}.items():
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            voice.synthesize_wav(text, out)
        clips[name] = buffer.getvalue()
    return clips


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture(scope="module")
def whisper_backend(whisper_path: Path, metrics_port: int) -> Iterator[BackendProcess]:
    """One backend serving the model it was started with, shared by the tests that do not stop it."""
    args = ["--model", str(whisper_path), *THREADS, "--metrics-port", str(metrics_port)]
    with BackendProcess(args, module=MODULE) as backend:
        backend.wait_ready()
        yield backend


@pytest.fixture
def whisper(whisper_backend: BackendProcess) -> Iterator[backend_pb2_grpc.BackendStub]:
    with grpc.insecure_channel(whisper_backend.address) as channel:
        yield backend_pb2_grpc.BackendStub(channel)


def health_of(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def transcribe(stub: backend_pb2_grpc.BackendStub, **fields: Any) -> backend_pb2.TranscriptResult:
    result: backend_pb2.TranscriptResult = stub.AudioTranscription(
        backend_pb2.TranscriptRequest(**fields), timeout=60
    )
    return result


def refusal(stub: backend_pb2_grpc.BackendStub, **fields: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        transcribe(stub, **fields)
    return caught.value


@pytest.mark.parametrize("name", sorted(SENTENCES))
def test_speech_is_heard_as_its_words(
    whisper: backend_pb2_grpc.BackendStub, speech: dict[str, bytes], name: str
) -> None:
    audio = speech[name]
    result = transcribe(whisper, audio=audio)
    assert word_error_rate(SENTENCES[name], result.text) <= 0.2, result.text
    assert result.text == result.text.strip(), "OpenAI's text has no leading or trailing space"
    assert result.language == "en"
    assert result.duration == pytest.approx(wav_seconds(audio), abs=0.01)
    assert result.segments
    total = round(result.duration * NANOSECONDS)
    previous_end = 0
    for index, segment in enumerate(result.segments):
        assert segment.id == index
        assert previous_end <= segment.start < segment.end <= total + NANOSECONDS // 10
        previous_end = segment.end
        assert segment.tokens and segment.temperature == 0.0
        assert segment.avg_logprob < 0 and 0 <= segment.no_speech_prob <= 1 and segment.compression_ratio > 0
        assert not segment.words, "words only with word_timestamps"
    # Nanoseconds, not seconds or milliseconds: the speech ends within the last half second.
    assert result.segments[-1].end > total - NANOSECONDS // 2


def test_word_timestamps_are_in_order_within_their_segments(
    whisper: backend_pb2_grpc.BackendStub, speech: dict[str, bytes]
) -> None:
    result = transcribe(whisper, audio=speech["report"], word_timestamps=True)
    assert word_error_rate(SENTENCES["report"], result.text) <= 0.2, result.text
    previous_end = 0
    for segment in result.segments:
        assert "".join(word.word for word in segment.words) == segment.text
        for word in segment.words:
            assert previous_end <= word.start <= word.end
            assert segment.start <= word.start and word.end <= segment.end
            assert 0 < word.probability <= 1
            previous_end = word.end
    assert previous_end > NANOSECONDS  # nanoseconds: the last word ends seconds in


def test_the_stream_sends_each_segment_then_the_whole_text(
    whisper: backend_pb2_grpc.BackendStub, speech: dict[str, bytes]
) -> None:
    whole = transcribe(whisper, audio=speech["long"])
    results = list(whisper.AudioTranscriptionStream(backend_pb2.TranscriptRequest(audio=speech["long"])))
    *parts, last = results
    assert parts and all(len(part.segments) == 1 for part in parts)
    assert [part.segments[0] for part in parts] == list(whole.segments)
    assert [part.text for part in parts] == [segment.text for segment in whole.segments]
    assert not last.segments
    assert (last.text, last.language, last.duration) == (whole.text, "en", whole.duration)
    assert word_error_rate(LONG, last.text) <= 0.2, last.text


def test_a_file_named_by_dst_is_read(
    whisper: backend_pb2_grpc.BackendStub, speech: dict[str, bytes], tmp_path: Path
) -> None:
    clip = tmp_path / "fox.wav"
    clip.write_bytes(speech["fox"])
    assert transcribe(whisper, dst=str(clip)).text == transcribe(whisper, audio=speech["fox"]).text


def test_translation_prompt_and_temperature_are_taken(
    whisper: backend_pb2_grpc.BackendStub, speech: dict[str, bytes]
) -> None:
    # English speech translated into English (the model is English-only) is still its words.
    translated = transcribe(whisper, audio=speech["fox"], translate=True, language="EN")
    assert translated.language == "en"
    assert word_error_rate(SENTENCES["fox"], translated.text) <= 0.2, translated.text
    sampled = transcribe(whisper, audio=speech["fox"], temperature=0.3, prompt="Foxes and dogs.")
    assert word_error_rate(SENTENCES["fox"], sampled.text) <= 0.3, sampled.text
    assert all(segment.temperature == pytest.approx(0.3) for segment in sampled.segments)


@pytest.mark.parametrize(
    "audio",
    [b"\x8f\x03" * 4000, b"these are the minutes of the meeting, not a recording\n" * 50, b""],
    ids=["random-bytes", "text-file", "empty"],
)
def test_undecodable_audio_is_the_clients_error(whisper: backend_pb2_grpc.BackendStub, audio: bytes) -> None:
    error = refusal(whisper, audio=audio)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be decoded" in error.details()
    with pytest.raises(grpc.RpcError) as caught:
        list(whisper.AudioTranscriptionStream(backend_pb2.TranscriptRequest(audio=audio), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_options_are_the_clients_error(
    whisper: backend_pb2_grpc.BackendStub, speech: dict[str, bytes], tmp_path: Path
) -> None:
    cases: dict[str, dict[str, Any]] = {
        "'klingon'": {"language": "klingon"},
        "'fr'": {"language": "fr"},  # a Whisper language, but not this English-only model's
        "temperature": {"temperature": -1.0},
        "diarize": {"diarize": True},
    }
    for named, fields in cases.items():
        error = refusal(whisper, audio=speech["fox"], **fields)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert named in error.details()
    missing = refusal(whisper, dst=str(tmp_path / "missing.wav"))
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT and "missing.wav" in missing.details()
    # Still serving after every refusal.
    assert whisper.Status(backend_pb2.HealthMessage()).state == backend_pb2.StatusResponse.READY


def test_a_backend_started_with_its_model_refuses_load_model(
    whisper: backend_pb2_grpc.BackendStub, whisper_backend: BackendProcess, tmp_path: Path
) -> None:
    assert health_of(whisper_backend.address) == SERVING
    assert health_of(whisper_backend.address, "backend.Backend") == SERVING
    with pytest.raises(grpc.RpcError) as caught:
        whisper.LoadModel(backend_pb2.ModelOptions(model_file=str(tmp_path)))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    status = whisper.Status(backend_pb2.HealthMessage())
    assert status.memory.total > 50_000_000 and status.scheduler.slots == 1


def test_metrics_count_the_audio_transcribed(
    whisper: backend_pb2_grpc.BackendStub, speech: dict[str, bytes], metrics_port: int
) -> None:
    duration = transcribe(whisper, audio=speech["fox"]).duration
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("localmodel_backend_")
    }
    assert values['localmodel_backend_audio_seconds_total{call="AudioTranscription"}'] >= duration
    assert values["localmodel_backend_slots"] == 1
    assert values["localmodel_backend_requests_running"] == 0


def test_without_a_model_calls_wait_for_load_model(
    whisper_path: Path, speech: dict[str, bytes], tmp_path: Path
) -> None:
    with BackendProcess(THREADS, module=MODULE) as backend:
        backend.wait_ready_to_connect()
        assert health_of(backend.address) == NOT_SERVING
        with grpc.insecure_channel(backend.address) as channel:
            stub = backend_pb2_grpc.BackendStub(channel)
            assert stub.Status(backend_pb2.HealthMessage()).state == backend_pb2.StatusResponse.UNINITIALIZED
            assert refusal(stub, audio=speech["fox"]).code() == grpc.StatusCode.FAILED_PRECONDITION

            (tmp_path / "notes.txt").write_text("not a model")
            failures = {
                str(tmp_path / "missing"): "no model directory",
                str(tmp_path): "no model.bin",
                str(tmp_path / "notes.txt"): "is a file",
            }
            for path, reason in failures.items():
                result = stub.LoadModel(backend_pb2.ModelOptions(model_file=path))
                assert not result.success and reason in result.message and path in result.message
            assert health_of(backend.address) == NOT_SERVING

            # LocalAI's way of naming it: the directory's name inside the models directory.
            named = backend_pb2.ModelOptions(model=whisper_path.name, model_path=str(whisper_path.parent))
            assert stub.LoadModel(named).success
            assert health_of(backend.address) == SERVING
            result = transcribe(stub, audio=speech["fox"])
            assert word_error_rate(SENTENCES["fox"], result.text) <= 0.2


@pytest.mark.parametrize(
    ("model", "reason"),
    [("missing", "no model directory at"), ("empty", "is not a CTranslate2 Whisper model")],
)
def test_a_model_that_does_not_load_ends_the_process(tmp_path: Path, model: str, reason: str) -> None:
    (tmp_path / "empty").mkdir()
    run = subprocess.run(
        [sys.executable, "-m", MODULE, "--addr", "127.0.0.1:0", "--model", str(tmp_path / model)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert reason in run.stderr and str(tmp_path / model) in run.stderr


def test_sigterm_finishes_the_transcription_in_flight(whisper_path: Path, speech: dict[str, bytes]) -> None:
    with BackendProcess(["--model", str(whisper_path), *THREADS], module=MODULE) as backend:
        backend.wait_ready()
        assert backend.process is not None
        with grpc.insecure_channel(backend.address) as channel:
            stub = backend_pb2_grpc.BackendStub(channel)
            call = stub.AudioTranscription.future(backend_pb2.TranscriptRequest(audio=speech["long"]))
            # Once the backend is transcribing (about a second of work on two CPUs), stop it.
            deadline = time.monotonic() + 10
            while stub.Status(backend_pb2.HealthMessage()).scheduler.running == 0:
                assert time.monotonic() < deadline and not call.done()
                time.sleep(0.01)
            backend.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            assert refusal(stub, audio=speech["fox"]).code() == grpc.StatusCode.UNAVAILABLE
            result = call.result(timeout=60)
            assert word_error_rate(LONG, result.text) <= 0.2, result.text
        assert backend.process.wait(timeout=30) == 0
