"""/v1/audio driven by the official openai client: the router over a real faster-whisper backend (Whisper
tiny) and a real Piper backend (en_US-joe-medium), each its own process on loopback.

The router runs in this process (uvicorn on a free port, real HTTP), over routes that carry their tasks as
a LocalModel's do, so a model asked for a task it does not serve answers 400 before any backend call.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from localmodel.ports import free_port
from localmodel_router.app import create_app
from localmodel_router.discovery import ModelRoute
from localmodel_router.discovery.local import LocalDiscovery
from localmodel_router.settings import RouterSettings
from localmodel_router.wav import UNKNOWN_SIZE
from tests.support.backend_process import BackendProcess
from tests.support.models import require_model

SENTENCE = "The quick brown fox jumps over the lazy dog."
MAX_AUDIO_BYTES = 1024 * 1024  # small, so that a test can go over it cheaply
PIPER_RATE = 22050  # en_US-joe-medium's sample rate
# This module's processes log to files here, shown when a test fails (CI keeps them).
LOGS = Path(os.environ.get("LOCALMODEL_TEST_LOGS", "/tmp")) / "localmodel-audio-tests"


@pytest.fixture(scope="module")
def whisper_model() -> Path:
    return require_model("whisper")


@pytest.fixture(scope="module")
def piper_model() -> Path:
    return require_model("piper")


def _backend(module: str, model: Path, name: str) -> Iterator[BackendProcess]:
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{name}.log").open("wb") as log:
        args = ["--model", str(model), "--threads", "1"]
        with BackendProcess(args, log_file=log, module=module) as backend:
            backend.wait_ready(timeout=180)
            yield backend


@pytest.fixture(scope="module")
def whisper_backend(whisper_model: Path) -> Iterator[BackendProcess]:
    yield from _backend("localmodel_whisper", whisper_model, "whisper")


@pytest.fixture(scope="module")
def piper_backend(piper_model: Path) -> Iterator[BackendProcess]:
    yield from _backend("localmodel_piper", piper_model, "piper")


class InProcessRouter:
    """The router app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: RouterSettings, routes: list[ModelRoute]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings, LocalDiscovery(routes, wake=lambda _: None))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> InProcessRouter:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive(), "the router stopped while starting"
            assert time.monotonic() < deadline, "the router did not start within 30s"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def router(
    whisper_backend: BackendProcess, piper_backend: BackendProcess, chat_backend: BackendProcess
) -> Iterator[InProcessRouter]:
    routes = [
        ModelRoute("whisper", (whisper_backend.address,), ("whisper-1",), tasks=frozenset({"transcription"})),
        ModelRoute("joe", (piper_backend.address,), ("tts-1",), tasks=frozenset({"speech"})),
        ModelRoute("smollm2", (chat_backend.address,), tasks=frozenset({"chat", "completion"})),
    ]
    settings = RouterSettings(max_audio_bytes=MAX_AUDIO_BYTES)
    with InProcessRouter(settings, routes) as running:
        yield running


@pytest.fixture(scope="module")
def speech(router: InProcessRouter) -> bytes:
    """The sentence spoken by the Piper voice, as the WAV the router streams."""
    audio = router.client().audio.speech.create(
        model="joe", voice="alloy", input=SENTENCE, response_format="wav"
    )
    return audio.content


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance (substitutions, insertions, deletions) over the reference's length."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, expected in enumerate(ref, start=1):
        current = [i]
        for j, heard in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (expected != heard)))
        previous = current
    return previous[-1] / len(ref)


def test_word_error_rate() -> None:
    assert word_error_rate("the quick brown fox", "The quick brown fox.") == 0
    assert word_error_rate("the quick brown fox", "the quick fox") == 0.25
    assert word_error_rate("the quick brown fox", "a quick brown fox jumps") == 0.5


def transcribe(
    router: InProcessRouter, path: str, files: dict[str, object], **data: object
) -> httpx.Response:
    return httpx.post(f"{router.url}/v1/audio/{path}", files=files, data=data, timeout=120)  # type: ignore[arg-type]


def assert_openai_error(
    reply: httpx.Response, status: int, *, param: str | None = None, text: str = ""
) -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert text in error["message"], error["message"]
    if param is not None:
        assert error["param"] == param, error


def test_speech_is_a_wav_of_the_voice_streamed(speech: bytes) -> None:
    reader = wave.open(io.BytesIO(speech))
    assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, PIPER_RATE)
    samples = reader.readframes(1 << 30)
    assert len(samples) == len(speech) - 44
    assert 1.0 < len(samples) / 2 / PIPER_RATE < 10.0, "a sentence is seconds of speech"
    assert int.from_bytes(speech[40:44], "little") == UNKNOWN_SIZE  # streamed: sizes not known up front
    assert max(abs(int.from_bytes(samples[i : i + 2], "little", signed=True)) for i in range(0, 20000, 2)) > 0


def test_transcription_gives_back_the_words(router: InProcessRouter, speech: bytes) -> None:
    client = router.client()
    result = client.audio.transcriptions.create(model="whisper", file=("speech.wav", speech))
    assert word_error_rate(SENTENCE, result.text) <= 0.2, result.text
    assert result.text == result.text.strip()
    assert result.usage is not None and result.usage.type == "duration" and result.usage.seconds > 1
    # By an alias, and as plain text.
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", speech), response_format="text"
    )
    assert isinstance(text, str) and word_error_rate(SENTENCE, text) <= 0.2, text


def test_verbose_json_has_segments_and_words_in_order_within_the_audio(
    router: InProcessRouter, speech: bytes
) -> None:
    verbose = router.client().audio.transcriptions.create(
        model="whisper",
        file=("speech.wav", speech),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert verbose.language == "english" and 1.0 < verbose.duration < 10.0
    assert word_error_rate(SENTENCE, verbose.text) <= 0.2
    assert verbose.segments and verbose.words
    for times in ([(s.start, s.end) for s in verbose.segments], [(w.start, w.end) for w in verbose.words]):
        assert all(0 <= start <= end <= verbose.duration + 0.01 for start, end in times), times
        assert [start for start, _ in times] == sorted(start for start, _ in times)
    assert word_error_rate(SENTENCE, " ".join(w.word for w in verbose.words)) <= 0.2
    segment = verbose.segments[0]
    assert segment.id == 0 and segment.tokens and segment.avg_logprob < 0 and 0 <= segment.no_speech_prob <= 1
    raw = transcribe(
        router,
        "transcriptions",
        {"file": ("speech.wav", speech)},
        model="whisper",
        response_format="verbose_json",
    ).json()
    assert raw["task"] == "transcribe" and "segments" in raw and "words" not in raw  # segments by default
    only_words = transcribe(
        router,
        "transcriptions",
        {"file": ("speech.wav", speech)},
        model="whisper",
        response_format="verbose_json",
        **{"timestamp_granularities[]": "word"},
    ).json()
    assert "words" in only_words and "segments" not in only_words


def _cue_times(subtitles: str, mark: str) -> list[tuple[float, float]]:
    stamp = rf"(\d\d):(\d\d):(\d\d){re.escape(mark)}(\d\d\d)"
    found = re.findall(rf"^{stamp} --> {stamp}$", subtitles, flags=re.MULTILINE)

    def seconds(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    return [(seconds(*cue[:4]), seconds(*cue[4:])) for cue in found]


@pytest.mark.parametrize(("response_format", "mark"), [("srt", ","), ("vtt", ".")])
def test_subtitles_have_cues_in_order_within_the_audio(
    router: InProcessRouter, speech: bytes, response_format: str, mark: str
) -> None:
    reply = transcribe(
        router,
        "transcriptions",
        {"file": ("speech.wav", speech)},
        model="whisper",
        response_format=response_format,
    )
    assert reply.status_code == 200, reply.text
    body = reply.text
    duration = len(speech[44:]) / 2 / PIPER_RATE
    if response_format == "vtt":
        assert body.startswith("WEBVTT\n\n") and reply.headers["content-type"].startswith("text/vtt")
    else:
        assert body.startswith("1\n00:00:")
    times = _cue_times(body, mark)
    assert times and all(0 <= start <= end <= duration + 0.05 for start, end in times), body
    assert [start for start, _ in times] == sorted(start for start, _ in times)
    text = " ".join(line for line in body.splitlines() if line and "-->" not in line and not line.isdigit())
    assert word_error_rate(SENTENCE, text.removeprefix("WEBVTT")) <= 0.2, body


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations so
def test_translation_into_english(router: InProcessRouter, speech: bytes) -> None:
    client = router.client()
    result = client.audio.translations.create(model="whisper", file=("speech.wav", speech))
    assert word_error_rate(SENTENCE, result.text) <= 0.2, result.text
    verbose = client.audio.translations.create(
        model="whisper", file=("speech.wav", speech), response_format="verbose_json"
    )
    assert verbose.language == "english" and verbose.segments
    raw = transcribe(
        router,
        "translations",
        {"file": ("speech.wav", speech)},
        model="whisper",
        response_format="verbose_json",
    )
    assert raw.json()["task"] == "translate"


def test_streamed_transcription_sends_deltas_then_the_whole_text(
    router: InProcessRouter, speech: bytes
) -> None:
    events = list(
        router.client().audio.transcriptions.create(model="whisper", file=("speech.wav", speech), stream=True)
    )
    assert [event.type for event in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert len(events) >= 2 and events[-1].type == "transcript.text.done"
    done = events[-1]
    assert word_error_rate(SENTENCE, done.text) <= 0.2, done.text
    assert "".join(event.delta for event in events[:-1]).strip() == done.text  # type: ignore[union-attr]


def test_pcm_is_the_raw_samples_at_the_rate_the_header_gives(router: InProcessRouter) -> None:
    reply = httpx.post(
        f"{router.url}/v1/audio/speech",
        json={
            "model": "tts-1",
            "voice": "echo",
            "input": "Hello there.",
            "response_format": "pcm",
            "speed": 1.5,
        },
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "audio/pcm"
    assert reply.headers["x-sample-rate"] == str(PIPER_RATE)
    assert not reply.content.startswith(b"RIFF") and len(reply.content) % 2 == 0
    assert 0.2 < len(reply.content) / 2 / PIPER_RATE < 5.0


def test_speech_with_a_format_not_produced_names_the_ones_that_are(router: InProcessRouter) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        router.client().audio.speech.create(model="joe", voice="alloy", input="Hi.", response_format="mp3")
    assert refused.value.status_code == 400
    assert "wav" in str(refused.value) and "pcm" in str(refused.value)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"response_format": "opus"}, 400, "response_format"),
        ({"speed": 4.5}, 400, "speed"),
        ({"speed": 0.2}, 400, "speed"),
        ({"input": "x" * 4097}, 400, "input"),
        ({"input": ""}, 400, "input"),
        ({"input": "   "}, 400, None),  # the backend: nothing to speak
        ({"instructions": "Speak cheerfully."}, 400, "instructions"),
        ({"stream_format": "sse"}, 400, "stream_format"),
        ({"model": "whisper"}, 400, "model"),
        ({"model": "smollm2"}, 400, "model"),
        ({"model": "tts-9"}, 404, "model"),
    ],
)
def test_bad_speech_requests_are_4xx_in_openai_shape(
    router: InProcessRouter, body: dict[str, object], status: int, param: str | None
) -> None:
    request = {"model": "joe", "voice": "alloy", "input": "Hello.", "response_format": "wav", **body}
    reply = httpx.post(f"{router.url}/v1/audio/speech", json=request, timeout=60)
    assert_openai_error(reply, status, param=param)


@pytest.mark.parametrize(
    ("file", "data", "status", "param", "text"),
    [
        (("notes.txt", b"hello, not audio", "text/plain"), {}, 400, "file", "flac, mp3, mp4"),
        (("empty.wav", b"", "audio/wav"), {}, 400, "file", "empty"),
        (("x.wav", os.urandom(4096), "audio/wav"), {}, 400, None, ""),  # the backend cannot decode it
        (("big.wav", b"\0" * (MAX_AUDIO_BYTES + 1), "audio/wav"), {}, 413, "file", str(MAX_AUDIO_BYTES)),
        (None, {}, 400, "file", ""),
        ("speech", {"response_format": "mp3"}, 400, "response_format", ""),
        ("speech", {"temperature": "1.5"}, 400, "temperature", ""),
        ("speech", {"language": "xx"}, 400, "language", ""),
        ("speech", {"timestamp_granularities[]": "word"}, 400, "timestamp_granularities[]", "verbose_json"),
        ("speech", {"timestamp_granularities[]": "sentence"}, 400, None, ""),
        ("speech", {"stream": "true", "response_format": "srt"}, 400, "stream", ""),
        ("speech", {"include[]": "logprobs"}, 400, "include[]", ""),
        ("speech", {"model": "smollm2"}, 400, "model", "transcription"),
        ("speech", {"model": "joe"}, 400, "model", "transcription"),
        ("speech", {"model": "whisper-9"}, 404, "model", "whisper"),
    ],
)
def test_bad_transcriptions_are_4xx_in_openai_shape(
    router: InProcessRouter,
    speech: bytes,
    file: tuple[str, bytes, str] | str | None,
    data: dict[str, str],
    status: int,
    param: str | None,
    text: str,
) -> None:
    upload = ("speech.wav", speech, "audio/wav") if file == "speech" else file
    files: dict[str, object] = (
        {"file": upload} if upload is not None else {"other": ("a", b"a", "text/plain")}
    )
    reply = transcribe(router, "transcriptions", files, **{"model": "whisper", **data})
    assert_openai_error(reply, status, param=param, text=text)


def test_a_body_over_the_upload_limit_is_413_before_it_is_read(router: InProcessRouter) -> None:
    huge = b"\0" * (9 * 1024 * 1024)  # over max_request_bytes and max_audio_bytes with room for fields
    reply = transcribe(router, "translations", {"file": ("big.wav", huge, "audio/wav")}, model="whisper")
    assert_openai_error(reply, 413)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_each_audio_path_has_its_own_metrics(router: InProcessRouter, speech: bytes) -> None:
    client = router.client()
    client.audio.transcriptions.create(model="whisper", file=("speech.wav", speech))
    client.audio.translations.create(model="whisper", file=("speech.wav", speech))
    client.audio.speech.create(model="joe", voice="alloy", input="Hi.", response_format="wav")
    text = httpx.get(f"{router.url}/metrics").text
    for path, model in (
        ("/v1/audio/transcriptions", "whisper"),
        ("/v1/audio/translations", "whisper"),
        ("/v1/audio/speech", "joe"),
    ):
        assert f'localmodel_router_requests_total{{endpoint="{path}",model="{model}",status="200"}}' in text


def test_the_api_document_describes_the_audio_operations(router: InProcessRouter) -> None:
    document = httpx.get(f"{router.url}/openapi.json").json()
    form = document["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form
    speech = document["paths"]["/v1/audio/speech"]["post"]["responses"]["200"]["content"]
    assert set(speech) == {"audio/wav", "audio/pcm"}
    assert json.dumps(document)  # serialisable as served


def test_speech_whose_backend_dies_midway_is_cut_off_not_passed_off_as_whole(piper_model: Path) -> None:
    """A failure after the first bytes cannot change the status any more: the body ends without its
    last chunk, which every HTTP client reports as an error."""
    backends = _backend("localmodel_piper", piper_model, "piper-killed")
    backend = next(backends)
    routes = [ModelRoute("joe", (backend.address,), tasks=frozenset({"speech"}))]
    text = " ".join(f"This is sentence number {i} of a long text." for i in range(60))
    received = 0
    with InProcessRouter(RouterSettings(), routes) as router:
        request = {"model": "joe", "voice": "alloy", "input": text, "response_format": "wav"}
        with (
            pytest.raises(httpx.RemoteProtocolError, match="incomplete"),
            httpx.stream("POST", f"{router.url}/v1/audio/speech", json=request, timeout=60) as reply,
        ):
            assert reply.status_code == 200
            for chunk in reply.iter_bytes():
                received += len(chunk)
                if received > 100_000 and backend.process is not None and backend.process.poll() is None:
                    backend.process.kill()
    assert received > 100_000
    next(backends, None)  # stops what is left of it
