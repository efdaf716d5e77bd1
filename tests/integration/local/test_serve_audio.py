"""`localmodel serve` of a Piper voice and a Whisper model: speech made by one is heard by the other,
through the official openai client, each model in its own engine's backend process."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from tests.support.local_mode import LocalMode
from tests.support.models import require_model
from tests.support.processes import backends_of
from tests.support.transcripts import word_error_rate

SENTENCE = "The quick brown fox jumps over the lazy dog, and local models answer on Kubernetes."


def directory_manifest(name: str, backend_type: str, folder: Path) -> dict[str, object]:
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": name},
        "spec": {"model": {"url": folder.as_uri() + "/"}, "backend": {"type": backend_type}},
    }


@pytest.fixture(scope="module")
def speech_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    folder = tmp_path_factory.mktemp("manifests")
    documents = [
        directory_manifest("joe", "piper", require_model("piper")),
        directory_manifest("whisper-tiny", "faster-whisper", require_model("whisper")),
    ]
    (folder / "audio.yaml").write_text(yaml.safe_dump_all(documents))
    work = tmp_path_factory.mktemp("local")
    with LocalMode(["serve", "-f", str(folder)], work / "cache", work / "serve.log") as served:
        yield served


def test_speech_from_one_engine_is_transcribed_by_the_other(speech_models: LocalMode) -> None:
    client = speech_models.client()
    speech = client.audio.speech.create(model="joe", voice="alloy", input=SENTENCE, response_format="wav")
    audio = speech.read()
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        # A streamed WAV's header cannot know its length: the bytes that came say it.
        seconds = (len(audio) - 44) / 2 / wav.getframerate()
    heard = client.audio.transcriptions.create(model="whisper-tiny", file=("speech.wav", audio))
    assert word_error_rate(SENTENCE, heard.text) <= 0.2, heard.text
    verbose = client.audio.transcriptions.create(
        model="whisper-tiny", file=("speech.wav", audio), response_format="verbose_json"
    )
    assert verbose.language in ("en", "english")
    starts = [segment.start for segment in verbose.segments or []]
    assert starts == sorted(starts) and all(
        segment.end <= verbose.duration + 0.05 for segment in verbose.segments or []
    )
    assert abs(verbose.duration - seconds) < 0.1


def test_each_model_runs_in_its_own_engine_and_serves_only_its_task(speech_models: LocalMode) -> None:
    assert speech_models.process is not None
    modules = {command[2] for command in backends_of(speech_models.process.pid).values()}
    assert modules == {"localmodel_piper", "localmodel_whisper"}
    client = speech_models.client()
    with pytest.raises(openai.BadRequestError, match="does not serve"):
        client.chat.completions.create(model="joe", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.BadRequestError, match="does not serve"):
        client.audio.speech.create(model="whisper-tiny", voice="alloy", input="Hi")
