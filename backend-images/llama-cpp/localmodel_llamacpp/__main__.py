"""`localmodel backend --addr HOST:PORT [--model FILE ...]` (also `python -m localmodel_llamacpp`).

`--addr` is the flag LocalAI passes to the backends it launches, so LocalAI can run this backend too.
With `--model` the backend loads the model at start (how a Kubernetes pod runs it); without, it waits
for a LoadModel call (how LocalAI runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import sys
from typing import Any

from localmodel.backend_server import add_serving_flags
from localmodel.logs import configure_logging
from localmodel_llamacpp.batching import DEFAULT_MAX_WAITING
from localmodel_llamacpp.options import DEFAULT_PROMPT_CACHE_RAM_MIB, PROMPT_CACHE_MODES
from localmodel_llamacpp.repack import REPACK_MODES
from localmodel_llamacpp.server import PreloadError, serve

log = logging.getLogger("localmodel_llamacpp")


def build_parser(prog: str = "localmodel backend") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve one GGUF model over gRPC with llama.cpp.")
    parser.add_argument("--addr", default="127.0.0.1:50051", help="host:port to listen on (port 0: any free)")
    parser.add_argument("--model", help="GGUF file to load at start (else wait for LoadModel)")
    model = parser.add_argument_group("model options (with --model)")
    model.add_argument("--context-size", type=int, default=0, help="KV cache size in tokens (default 4096)")
    model.add_argument(
        "--threads", type=int, default=0, help="CPU threads (default: the CPUs this process may use)"
    )
    model.add_argument(
        "--batch-size", type=int, default=0, help="prompt tokens per decode step (default 512)"
    )
    model.add_argument("--gpu-layers", type=int, default=0, help="layers to offload to the GPU (-1: all)")
    model.add_argument(
        "--parallel",
        type=int,
        default=0,
        help="requests decoded together, each with the full context (default: up to 4, by context size)",
    )
    model.add_argument(
        "--lanes",
        type=int,
        default=0,
        help="decode lanes sharing the cores and slots (default: 2 for a small model on a CPU, else 1)",
    )
    model.add_argument(
        "--repack",
        choices=REPACK_MODES,
        default="",
        help="put weights into llama.cpp's repacked (faster-kernel) buffers; auto: on, except where "
        "llama.cpp's AMX kernels would run, which crash (default auto; `localmodel doctor` says why)",
    )
    model.add_argument(
        "--prompt-cache",
        choices=PROMPT_CACHE_MODES,
        default="",
        help="reuse of a slot's cached prompt: exact (whole 64-token chunks only: every answer as on a fresh "
        "slot; default) or prefix (the whole common prefix, as llama-server's cache_prompt)",
    )
    model.add_argument(
        "--prompt-cache-ram",
        type=int,
        default=None,
        metavar="MIB",
        help="host memory for prompts whose slot was taken, restored instead of decoded again, as "
        f"llama-server's --cache-ram (default {DEFAULT_PROMPT_CACHE_RAM_MIB}; 0: off)",
    )
    model.add_argument("--embeddings", action="store_true", help="load for embeddings")
    model.add_argument(
        "--no-mmap", action="store_true", help="read the file into memory instead of mapping it"
    )
    model.add_argument("--mlock", action="store_true", help="lock the model in RAM")
    model.add_argument("--flash-attention", choices=["on", "off", "auto"], default="", help="flash attention")
    model.add_argument("--option", action="append", default=[], metavar="KEY:VALUE", help="backend option")
    add_serving_flags(parser, DEFAULT_MAX_WAITING)
    return parser


def preload_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """LoadModel fields for `--model`, or None to wait for a LoadModel call."""
    if not args.model:
        return None
    return {
        "model_file": args.model,
        "context_size": args.context_size,
        "threads": args.threads,
        "n_batch": args.batch_size,
        "n_gpu_layers": args.gpu_layers,
        "embeddings": args.embeddings,
        "mmap": not args.no_mmap,
        "mlock": args.mlock,
        "flash_attention": args.flash_attention,
        "options": [
            *args.option,
            *([f"parallel:{args.parallel}"] if args.parallel else []),
            *([f"lanes:{args.lanes}"] if args.lanes else []),
            *([f"repack:{args.repack}"] if args.repack else []),
            *([f"prompt_cache:{args.prompt_cache}"] if args.prompt_cache else []),
            *([f"prompt_cache_ram:{args.prompt_cache_ram}"] if args.prompt_cache_ram is not None else []),
        ],
    }


def main(argv: list[str] | None = None, prog: str = "localmodel backend") -> int:
    args = build_parser(prog).parse_args(argv)
    configure_logging(args.log_level)
    # A crash inside llama.cpp (SIGSEGV, SIGILL, SIGABRT, SIGBUS) writes "Fatal Python error" and the
    # crashing thread's Python stack to stderr before the process dies: what local mode and the pod's
    # termination message show as the crash's last output. One thread only: the others' stacks would
    # push the lines before the crash out of those last lines.
    faulthandler.enable(all_threads=False)
    try:
        asyncio.run(
            serve(
                args.addr,
                preload_options(args),
                args.grace_period,
                args.metrics_port,
                args.max_waiting,
                args.allow_load_model,
            )
        )
    except PreloadError as error:
        log.error("could not load the model", extra={"reason": str(error)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m localmodel_llamacpp"))
