"""`python -m localmodel_piper --addr HOST:PORT [--model VOICE ...]`: one Piper voice over gRPC.

VOICE is a directory holding `<name>.onnx` and `<name>.onnx.json` (several voices: pick one with
`--option voice:<name>`), or the `.onnx` file itself. Without `--model` the backend waits for a
LoadModel call, as LocalAI runs its backends.
"""

from __future__ import annotations

import argparse
import sys

from localmodel.backend_server import backend_parser, run_backend
from localmodel_piper.servicer import PiperServicer


def build_parser(prog: str = "python -m localmodel_piper") -> argparse.ArgumentParser:
    parser = backend_parser(prog, "Serve one Piper voice (text to speech) over gRPC.")
    parser.epilog = (
        "The model is a voice directory (<name>.onnx with <name>.onnx.json) or the .onnx file; "
        "--option voice:<name> picks one of several voices in a directory. CPU only."
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m localmodel_piper") -> int:
    return run_backend(build_parser(prog), lambda _args: PiperServicer, argv)


if __name__ == "__main__":
    sys.exit(main())
