"""Piper, the one blocking seam: a loaded voice that synthesises sentence by sentence.

Everything here blocks (onnxruntime, espeak-ng) and runs in the work queue's threads. Piper's own
`PiperVoice.load` builds its onnxruntime session with default options, which start a thread per core
of the machine (a node's cores, in a pod); so the session is built here, with the thread count asked
for, and handed to `PiperVoice` (a dataclass of the session and the config). CPU only: the image has
no GPU build of onnxruntime.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime  # no stubs, no py.typed
from piper import PhonemeType, PiperConfig, PiperVoice, SynthesisConfig
from piper.phoneme_ids import phonemes_to_ids

from localmodel.backend_server import InvalidInputError, ModelLoadError
from localmodel.cpus import available_cpus
from localmodel_piper.speech import Speakers, Speech
from localmodel_piper.voices import VoiceFiles

log = logging.getLogger(__name__)

SAMPLE_WIDTH = 2  # bytes: 16-bit PCM, what Piper's chunks and the contract's Reply.audio carry


@dataclass(frozen=True)
class Voice:
    """A loaded Piper voice."""

    files: VoiceFiles
    threads: int
    piper: PiperVoice

    @property
    def sample_rate(self) -> int:
        rate: int = self.piper.config.sample_rate
        return rate

    @property
    def default_length_scale(self) -> float:
        scale: float = self.piper.config.length_scale
        return scale

    @property
    def speakers(self) -> Speakers:
        config = self.piper.config
        return Speakers(count=config.num_speakers, ids=dict(config.speaker_id_map))

    def synthesize(self, text: str, speech: Speech) -> Iterator[bytes]:
        """16-bit mono PCM, one chunk per sentence, each as soon as it is synthesised."""
        settings = SynthesisConfig(speaker_id=speech.speaker_id, length_scale=speech.length_scale)
        spoken = False
        for chunk in self.piper.synthesize(text, settings):
            spoken = True
            yield chunk.audio_int16_bytes
        if not spoken:
            raise InvalidInputError("the text has nothing to speak (no words Piper can pronounce)")

    def write_wav(self, text: str, speech: Speech, destination: Path) -> Iterator[int]:
        """Write the speech to `destination` as a WAV file, sentence by sentence (yielding the samples
        of each; a consumer that stops early stops the synthesis). The file appears complete or not at
        all: it is written beside the destination and renamed over it at the end."""
        try:
            handle, partial_name = tempfile.mkstemp(
                dir=destination.parent, prefix=f".{destination.name}.", suffix=".partial"
            )
        except OSError as error:
            raise InvalidInputError(f"dst {destination}: cannot write there ({error.strerror})") from error
        partial = Path(partial_name)
        try:
            os.fchmod(handle, 0o644)  # what open() would give it; mkstemp's 0600 would lock the reader out
            with os.fdopen(handle, "wb") as file, wave.open(file, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(SAMPLE_WIDTH)
                wav.setframerate(self.sample_rate)
                for pcm in self.synthesize(text, speech):
                    wav.writeframes(pcm)
                    yield len(pcm) // SAMPLE_WIDTH
            try:
                partial.replace(destination)
            except OSError as error:
                raise InvalidInputError(
                    f"dst {destination}: cannot write there ({error.strerror})"
                ) from error
        finally:
            partial.unlink(missing_ok=True)


def load_voice(files: VoiceFiles, threads: int) -> Voice:
    """The voice in `files`, its onnxruntime session on `threads` threads (0: the CPUs this process may
    use), checked with one tiny synthesis. Raises ModelLoadError with the reason."""
    if threads < 0:
        raise ModelLoadError(f"threads: must not be negative, got {threads}")
    threads = threads or available_cpus()
    config = _read_config(files.config)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # Piper's graph runs its nodes one after another
    # Idle threads sleep instead of spinning: a spinning thread burns a pod's CPU quota (and a shared
    # machine's cores) between sentences. Measured on 2 busy cores: faster, and 30 % less CPU.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(
            str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        raise ModelLoadError(f"onnxruntime could not load {files.model}: {error}") from error
    voice = Voice(files, threads, PiperVoice(session=session, config=config))
    _warm_up(voice)
    return voice


def _read_config(path: Path) -> PiperConfig:
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read the voice config {path}: {error}") from error
    try:
        config: PiperConfig = PiperConfig.from_dict(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelLoadError(
            f"{path} is not a Piper voice config ({type(error).__name__}: {error})"
        ) from error
    return config


def _warm_up(voice: Voice) -> None:
    """One tiny synthesis, so that a config that does not fit its model fails the load rather than the
    first request, and the first request does not pay for onnxruntime's first run (nor espeak-ng's
    start)."""
    config = voice.piper.config
    try:
        silence = phonemes_to_ids([], config.phoneme_id_map)  # start, pad, end: any language's
        voice.piper.phoneme_ids_to_audio(silence, SynthesisConfig())
        if config.phoneme_type == PhonemeType.ESPEAK:
            voice.piper.phonemize("Hello.")
    except Exception as error:  # onnxruntime's and espeak-ng's exceptions are of many types
        raise ModelLoadError(
            f"{voice.files.model} did not synthesise: {type(error).__name__}: {error}"
        ) from error
