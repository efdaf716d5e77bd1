"""Build llama.cpp's own `llama-server` from the llama.cpp source that the pinned llama-cpp-python vendors,
into `.tools/llama-server/<version>/`: the baseline `bench/serving_throughput.py` measures us against.

Same source and same build options as our backend's llama.cpp: the llama-cpp-python sdist of the installed
version (fetched with `pip download`, as pip itself fetches it to compile the backend; nothing else is
downloaded), configured as llama-cpp-python's own CMakeLists configures llama.cpp (Release, shared
libraries, no curl, llama.cpp's defaults otherwise: GGML_NATIVE, OpenMP, the CPU's kernels), plus any
`CMAKE_ARGS` in the environment, which pip passes to the backend's build too. The web UI is left out (it
would be downloaded) and so is HTTPS (not needed on loopback). Only the `llama-server` target is built.
Idempotent: a binary already built for this version that runs is kept.

    python -m scripts.llama_server          # prints the path of the llama-server binary
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from scripts.model_files import pip_download

TOOLS = Path(os.environ.get("LOCALMODEL_TOOLS", Path(__file__).resolve().parent.parent / ".tools"))
# What llama-cpp-python's CMakeLists sets for its own build of llama.cpp, and what we leave out.
BUILD_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
]


def pinned_version() -> str:
    """The llama-cpp-python version installed here: the one our backend runs."""
    return metadata.version("llama-cpp-python")


def binary_path(version: str | None = None) -> Path:
    return TOOLS / "llama-server" / (version or pinned_version()) / "build" / "bin" / "llama-server"


def runs(binary: Path) -> bool:
    if not os.access(binary, os.X_OK):
        return False
    return subprocess.run([binary, "--version"], capture_output=True).returncode == 0


def ensure_llama_server(say: Callable[[str], None] = print) -> Path:
    """The path of a working llama-server for the pinned version, built first where there is none."""
    version = pinned_version()
    binary = binary_path(version)
    if runs(binary):
        return binary
    folder = binary.parents[2]
    source = folder / "llama.cpp"
    if not (source / "CMakeLists.txt").exists():
        say(f"[llama-server] fetching the llama-cpp-python {version} sdist for its vendored llama.cpp")
        _extract_vendored_source(version, source)
    cmake = shutil.which("cmake")
    if cmake is None:
        raise SystemExit(
            "llama-server: cmake is needed to build it (apt-get install cmake, or pip install cmake)"
        )
    build = folder / "build"
    options = [*BUILD_OPTIONS, *shlex.split(os.environ.get("CMAKE_ARGS", ""))]
    if shutil.which("ninja"):
        options += ["-G", "Ninja"]
    jobs = str(os.cpu_count() or 1)
    say(f"[llama-server] building llama-server {version} with {jobs} jobs (about 10 minutes on 2 cores)")
    started = time.monotonic()
    _run([cmake, "-S", str(source), "-B", str(build), *options], build / "configure.log")
    _run([cmake, "--build", str(build), "--target", "llama-server", "-j", jobs], build / "build.log")
    if not runs(binary):
        raise SystemExit(f"llama-server: the build finished but {binary} does not run; see {build}/build.log")
    say(f"[llama-server] built in {time.monotonic() - started:.0f}s: {binary}")
    return binary


def _extract_vendored_source(version: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sdist = pip_download(f"llama-cpp-python=={version}", Path(tmp), sdist=True)
        prefix = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name.removeprefix(prefix)
            staging = target.with_name(target.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            archive.extractall(staging, members=[m for m in members if m.name], filter="data")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)


def _run(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        finished = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"llama-server: `{shlex.join(command)}` failed ({log}):\n{tail}")


if __name__ == "__main__":
    print(ensure_llama_server(say=lambda line: print(line, file=sys.stderr)))
