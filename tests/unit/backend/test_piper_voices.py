"""Which files a Piper model source names: a voice directory, or the .onnx file with its config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from localmodel.backend_server import ModelLoadError
from localmodel_piper.voices import VoiceFiles, model_source, voice_files, voice_option


def voice(directory: Path, *names: str, config: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / f"{name}.onnx").write_bytes(b"onnx")
        if config:
            (directory / f"{name}.onnx.json").write_text("{}")
    return directory


def test_a_directory_with_one_voice_names_it(tmp_path: Path) -> None:
    folder = voice(tmp_path / "joe", "en_US-joe-medium")
    found = voice_files(folder)
    assert found == VoiceFiles(folder / "en_US-joe-medium.onnx", folder / "en_US-joe-medium.onnx.json")
    assert found.name == "en_US-joe-medium"


def test_the_onnx_file_names_its_voice_with_the_config_beside_it(tmp_path: Path) -> None:
    folder = voice(tmp_path, "en_US-joe-medium")
    model = folder / "en_US-joe-medium.onnx"
    assert voice_files(model) == VoiceFiles(model, folder / "en_US-joe-medium.onnx.json")
    assert voice_files(model, "en_US-joe-medium").model == model  # the option agreeing is fine


def test_several_voices_need_the_voice_option(tmp_path: Path) -> None:
    folder = voice(tmp_path, "b-voice", "a-voice")
    with pytest.raises(ModelLoadError, match=r"2 voices \(a-voice, b-voice\).*--option voice:<name>"):
        voice_files(folder)
    assert voice_files(folder, "b-voice").model == folder / "b-voice.onnx"
    assert voice_files(folder, "a-voice.onnx").model == folder / "a-voice.onnx"  # with its suffix too
    with pytest.raises(ModelLoadError, match=r"no voice 'c-voice'.*holds a-voice, b-voice"):
        voice_files(folder, "c-voice")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda root: voice(root / "empty"), "no Piper voice in"),
        (lambda root: root / "missing", "voice not found"),
        (lambda root: voice(root, "lonely", config=False), "no voice config lonely.onnx.json beside"),
        (lambda root: voice(root, "lonely", config=False) / "lonely.onnx", "give the directory"),
    ],
    ids=["empty directory", "missing path", "directory without config", "file without config"],
)
def test_sources_that_are_no_voice_say_why(tmp_path: Path, make: Callable[[Path], Path], reason: str) -> None:
    with pytest.raises(ModelLoadError, match=reason):
        voice_files(make(tmp_path))


def test_a_voice_option_contradicting_the_file_is_refused(tmp_path: Path) -> None:
    model = voice(tmp_path, "joe") / "joe.onnx"
    with pytest.raises(ModelLoadError, match="'amy' asked for"):
        voice_files(model, "amy")


def test_the_source_is_named_the_ways_localai_names_it() -> None:
    assert model_source("/models/joe", "ignored", "/elsewhere") == Path("/models/joe")
    assert model_source("", "joe/joe.onnx", "/models") == Path("/models/joe/joe.onnx")
    assert model_source("joe", "", "") == Path("joe")
    with pytest.raises(ModelLoadError, match="no voice named"):
        model_source("", "", "/models")


def test_only_the_voice_option_is_read_from_the_backend_options(caplog: pytest.LogCaptureFixture) -> None:
    assert voice_option([]) is None
    assert voice_option(["voice:en_US-amy-low"]) == "en_US-amy-low"
    assert voice_option(["voice:"]) is None
    assert voice_option(["gpu:true", "voice:a"]) == "a"
    assert "ignoring backend option" in caplog.text
