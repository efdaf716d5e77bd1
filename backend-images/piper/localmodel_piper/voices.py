"""Which files make the voice a model source names.

A Piper voice is two files: `<name>.onnx` (the network) and `<name>.onnx.json` (its config: sample rate,
phonemes, speakers). A source names either the directory holding them or the `.onnx` file itself; a
directory with several voices needs `--option voice:<name>` to say which.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from localmodel.backend_server import ModelLoadError

log = logging.getLogger(__name__)

MODEL_SUFFIX = ".onnx"
CONFIG_SUFFIX = ".onnx.json"


@dataclass(frozen=True)
class VoiceFiles:
    model: Path  # <name>.onnx
    config: Path  # <name>.onnx.json

    @property
    def name(self) -> str:
        return self.model.name.removesuffix(MODEL_SUFFIX)


def model_source(model_file: str, model: str, model_path: str) -> Path:
    """The voice's path, named the ways LocalAI names it: the full path in `model_file`, or a name in
    `model` inside the models directory `model_path`."""
    name = model_file or model
    if not name:
        raise ModelLoadError("model_file / model: no voice named (a directory or an .onnx file)")
    path = Path(name)
    if not path.is_absolute() and model_path:
        path = Path(model_path) / path
    return path


def voice_option(options: Iterable[str]) -> str | None:
    """The `voice:<name>` among the backend options, or None. LocalAI passes options meant for many
    backends; the others are logged and ignored."""
    voice = None
    for option in options:
        key, _, value = option.partition(":")
        if key == "voice":
            voice = value.strip() or None
        else:
            log.warning("ignoring backend option this backend does not know", extra={"option": option})
    return voice


def voice_files(source: Path, voice: str | None = None) -> VoiceFiles:
    """The voice `source` names (a directory, or an .onnx file), checked to exist; `voice` picks one
    of several in a directory."""
    if source.is_dir():
        model = _pick_model(source, voice)
    elif source.is_file():
        model = source
        if voice is not None and voice != VoiceFiles(source, source).name:
            raise ModelLoadError(f"voice {voice!r} asked for, but the model source is the file {source}")
    else:
        raise ModelLoadError(f"voice not found: {source} (want a directory or an .onnx file)")
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise ModelLoadError(
            f"no voice config {config.name} beside {model}: a Piper voice is <name>.onnx with "
            f"<name>.onnx.json beside it (or give the directory that holds both)"
        )
    return VoiceFiles(model, config)


def _pick_model(directory: Path, voice: str | None) -> Path:
    models = sorted(path for path in directory.glob(f"*{MODEL_SUFFIX}") if path.is_file())
    names = [path.name.removesuffix(MODEL_SUFFIX) for path in models]
    if not models:
        raise ModelLoadError(f"no Piper voice in {directory}: want a <name>.onnx with its <name>.onnx.json")
    if voice is not None:
        wanted = voice.removesuffix(MODEL_SUFFIX)
        if wanted not in names:
            raise ModelLoadError(f"no voice {wanted!r} in {directory}; it holds {', '.join(names)}")
        return directory / f"{wanted}{MODEL_SUFFIX}"
    if len(models) > 1:
        raise ModelLoadError(
            f"{directory} holds {len(models)} voices ({', '.join(names)}): "
            "pick one with --option voice:<name>"
        )
    return models[0]
