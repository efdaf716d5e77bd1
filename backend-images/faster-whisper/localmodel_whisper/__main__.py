"""`python -m localmodel_whisper --addr HOST:PORT [--model DIR ...]`: speech to text over gRPC.

The command line is every backend's (localmodel/backend_server.py) plus where CTranslate2 runs and in
which precision. With `--model` the backend loads the model directory at start (how a pod runs it);
without, it waits for a LoadModel call (how LocalAI runs it).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from localmodel.backend_server import ServicerFactory, backend_parser, run_backend
from localmodel_whisper.options import COMPUTE_TYPES, DEVICES
from localmodel_whisper.servicer import WhisperServicer


def build_parser(prog: str = "python -m localmodel_whisper") -> argparse.ArgumentParser:
    return backend_parser(
        prog, "Serve one Whisper model (CTranslate2 format) over gRPC with faster-whisper.", _engine_options
    )


def _engine_options(model: argparse._ArgumentGroup) -> None:
    model.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where CTranslate2 runs (default auto: cuda if it sees a GPU, else cpu)",
    )
    model.add_argument(
        "--compute-type",
        choices=COMPUTE_TYPES,
        default="",
        help="CTranslate2's compute type (default: int8 on cpu, float16 on cuda)",
    )


def main(argv: list[str] | None = None) -> int:
    # The engine's own flags reach the servicer through its factory (LoadModel's request for --model
    # carries only the shared ones).
    def servicer_for(args: argparse.Namespace) -> ServicerFactory:
        return partial(WhisperServicer, device=args.device, compute_type=args.compute_type)

    return run_backend(build_parser(), servicer_for, argv)


if __name__ == "__main__":
    sys.exit(main())
