"""Real-time factor of speech through localmodel against the engines called in-process.

Real-time factor here is seconds of audio per second of wall time (higher is faster; 10× makes ten
seconds of audio in one). Each system handles the same paragraph (about 12 s spoken), one request at
a time, with the same model and threads:

- synthesis: `audio.speech.create` (WAV) through local mode's router to the Piper backend, against
  piper-tts's `PiperVoice.synthesize` in this process; also the time to the first audio bytes (the
  router streams the backend's chunks as they are synthesised) against the first chunk in-process;
- transcription: `audio.transcriptions.create` of that speech through the router to the faster-whisper
  backend, against `WhisperModel.transcribe` in this process (int8 on the CPU, the backend's default).

    .venv/bin/python -m bench.audio_throughput [--threads 2] [--repeats 5]

Systems take turns per repeat; the figures are medians. The other processes' and the hypervisor's share
of the CPUs during each system's runs is printed: figures from a busy machine are not worth comparing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import yaml
from faster_whisper import WhisperModel
from piper import PiperVoice
from rich.console import Console
from rich.table import Table

from bench.machine import CpuWatch, describe
from scripts.model_files import ensure_model
from tests.support.local_mode import LocalMode

PARAGRAPH = (
    "Local models run where the data lives. A cluster turns each manifest into a backend that loads the "
    "model once and answers many requests. The router in front of them speaks the same interface as the "
    "cloud, so the applications do not change when the model moves closer to home."
)


def wav_seconds(data: bytes) -> float:
    """Length of a WAV's audio from its bytes (a streamed WAV's header may not know it)."""
    with wave.open(io.BytesIO(data)) as wav:
        frames = (len(data) - 44) // (wav.getsampwidth() * wav.getnchannels())
        return frames / wav.getframerate()


def in_process_speech(voice: PiperVoice) -> tuple[bytes, float, float]:
    """(WAV bytes, seconds to the first chunk, seconds in all) of piper-tts synthesising PARAGRAPH."""
    started = time.perf_counter()
    first = 0.0
    pcm = bytearray()
    rate = voice.config.sample_rate
    for chunk in voice.synthesize(PARAGRAPH):
        first = first or time.perf_counter() - started
        pcm += chunk.audio_int16_bytes
    wall = time.perf_counter() - started
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(pcm))
    return out.getvalue(), first, wall


def served_speech(served: LocalMode) -> tuple[bytes, float, float]:
    client = served.client()
    started = time.perf_counter()
    first = 0.0
    body = bytearray()
    with client.audio.speech.with_streaming_response.create(
        model="voice", voice="alloy", input=PARAGRAPH, response_format="wav"
    ) as response:
        for piece in response.iter_bytes():
            first = first or time.perf_counter() - started
            body += piece
    return bytes(body), first, time.perf_counter() - started


def in_process_transcription(model: WhisperModel, audio: bytes) -> tuple[str, float]:
    started = time.perf_counter()
    segments, _ = model.transcribe(io.BytesIO(audio))
    text = "".join(segment.text for segment in segments).strip()
    return text, time.perf_counter() - started


def served_transcription(served: LocalMode, audio: bytes) -> tuple[str, float]:
    started = time.perf_counter()
    result = served.client().audio.transcriptions.create(model="whisper", file=("speech.wav", audio))
    return result.text, time.perf_counter() - started


def manifests(folder: Path, threads: int) -> Path:
    def manifest(name: str, backend_type: str, model: Path) -> dict[str, object]:
        spec = {
            "model": {"url": model.as_uri() + "/"},
            "backend": {"type": backend_type, "engine": {"threads": threads}},
        }
        return {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": name},
            "spec": spec,
        }

    documents = [
        manifest("voice", "piper", ensure_model("piper")),
        manifest("whisper", "faster-whisper", ensure_model("whisper")),
    ]
    (folder / "audio.yaml").write_text(yaml.safe_dump_all(documents))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads of every engine (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per system (default 5)")
    args = parser.parse_args()
    console = Console(width=160)
    machine = describe(("faster-whisper", "ctranslate2", "piper-tts", "onnxruntime"))
    console.print(f"machine: {machine['cpu_model']}, {machine['nproc']} CPUs; {machine}")

    voice_dir = ensure_model("piper")
    voice = PiperVoice.load(next(voice_dir.glob("*.onnx")))  # onnxruntime's threads: all CPUs, as ours
    whisper = WhisperModel(
        str(ensure_model("whisper")), device="cpu", compute_type="int8", cpu_threads=args.threads
    )

    results: dict[str, list[tuple[float, float, float]]] = {}  # system -> (audio s, first s, wall s)
    shares: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        folder = manifests(Path(work), args.threads)
        with LocalMode(
            ["serve", "-f", str(folder)], Path(work) / "cache", Path(work) / "serve.log"
        ) as served:
            reference_audio, _, _ = in_process_speech(voice)
            in_process_transcription(whisper, reference_audio)  # warm both engines and the servers once
            served_speech(served)
            served_transcription(served, reference_audio)
            runs: dict[str, Callable[[], tuple[float, float, float]]] = {
                "speech, localmodel": lambda: _speech(served_speech(served)),
                "speech, in-process": lambda: _speech(in_process_speech(voice)),
                "transcription, localmodel": lambda: _heard(
                    reference_audio, served_transcription(served, reference_audio)
                ),
                "transcription, in-process": lambda: _heard(
                    reference_audio, in_process_transcription(whisper, reference_audio)
                ),
            }
            watch = CpuWatch()
            for _ in range(args.repeats):
                for system, run in runs.items():
                    watch.mark()
                    results.setdefault(system, []).append(run())
                    watch.mark()
                    shares.setdefault(system, []).append(watch.intervals[-1].others_share(machine["nproc"]))

    table = Table(
        title=f"Real-time factor, median of {args.repeats} ({machine['cpu_model']}, {args.threads} threads)"
    )
    for column in (
        "system",
        "audio s",
        "wall s",
        "real-time factor",
        "× in-process",
        "first audio",
        "others' CPU",
    ):
        table.add_column(column, justify="right" if column != "system" else "left")
    medians = {
        system: [statistics.median(values) for values in zip(*runs, strict=True)]
        for system, runs in results.items()
    }
    for system, (audio, first, wall) in medians.items():
        task = system.split(",")[0]
        base_audio, _, base_wall = medians[f"{task}, in-process"]
        ratio = (audio / wall) / (base_audio / base_wall)
        table.add_row(
            system,
            f"{audio:.2f}",
            f"{wall:.3f}",
            f"{audio / wall:.1f}×",
            f"{ratio:.2f}×",
            f"{first * 1000:.0f} ms" if first else "",
            f"{max(shares[system]):.1%}",
        )
    console.print(table)


def _speech(result: tuple[bytes, float, float]) -> tuple[float, float, float]:
    audio, first, wall = result
    return wav_seconds(audio), first, wall


def _heard(audio: bytes, result: tuple[str, float]) -> tuple[float, float, float]:
    _, wall = result
    return wav_seconds(audio), 0.0, wall


if __name__ == "__main__":
    main()
