"""The speech engines in a cluster: examples/piper.yaml and examples/whisper.yaml applied as they are
written (one thread each), their pods running the engines' images' entry points, and the router finding
them by their aliases: what one says, the other hears.

Whisper comes as its example says, a Hugging Face repository fetched whole by the pod's init container
(from the stand-in Hub); the Piper voice from the PersistentVolumeClaim `piper-voices`, into which it is
copied first, as the example tells its reader to do.
"""

from __future__ import annotations

import asyncio
import io
import sys
import wave
from pathlib import Path

from localmodel.backend_types import BackendType, backend_kind
from localmodel_operator.settings import default_image
from tests.e2e.conftest import Stack, example
from tests.support.models import require_model
from tests.support.transcripts import word_error_rate

SENTENCE = "The quick brown fox jumps over the lazy dog, and local models answer on Kubernetes."
ONE_THREAD = {"threads": 1}  # two engines and the control plane on a 2-core node


async def test_speech_made_by_the_piper_example_is_heard_by_the_whisper_example(stack: Stack) -> None:
    voice = stack.node.claim("piper-voices") / "en_US-joe-medium"  # the path pvc://piper-voices/… names
    voice.mkdir(parents=True)
    for file in require_model("piper").iterdir():  # kubectl cp, as the example says
        (voice / file.name).symlink_to(file)
    piper, whisper = [
        await stack.apply_example(
            file_name, backend={**example(file_name)[1]["backend"], "engine": ONE_THREAD}
        )
        for file_name in ("piper.yaml", "whisper.yaml")
    ]
    await asyncio.gather(stack.ready(piper, 1), stack.ready(whisper, 1))
    for name, backend_type in ((piper, BackendType.PIPER), (whisper, BackendType.FASTER_WHISPER)):
        (pod,) = stack.node.pods_of(name)
        (container,) = pod.spec["containers"]
        assert container["image"] == default_image(backend_type, "cpu")  # the engine's own image
        assert "command" not in container  # its ENTRYPOINT: the engine table's entry point
        assert pod.process is not None
        ran = _command_line(pod.process.pid)
        assert ran[:3] == [sys.executable, "-m", backend_kind(backend_type).module], ran

    async with stack.router.async_client() as client:
        speech = await client.audio.speech.create(
            model="tts-1", voice="alloy", input=SENTENCE, response_format="wav"
        )
        audio = await speech.aread()
        heard = await client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio))
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
    assert word_error_rate(SENTENCE, heard.text) <= 0.2, heard.text


def _command_line(pid: int) -> list[str]:
    return [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if part]
