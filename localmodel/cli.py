"""The `localmodel` command: one subcommand per entry point; each parses its own flags."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from localmodel import __version__

USAGE_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localmodel", description=__doc__, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"localmodel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("serve", "serve LocalModel manifests on this machine (router + backend processes)"),
        ("run", "serve one GGUF file or URL with default settings"),
        ("fetch", "download a model file into the cache and print its path"),
        ("plan", "whether LocalModels fit in memory (RAM, GPUs) and how, from their files' headers only"),
        ("backend", "run the llama.cpp gRPC backend"),
        ("router", "run the OpenAI-compatible router over fixed backend addresses"),
        ("operator", "run the Kubernetes operator: LocalModels → backend Deployments"),
        ("bench", "measure any OpenAI-compatible server: tokens/s, time to first token, latency"),
        ("doctor", "show what llama.cpp will use on this machine (CPU features, GPU, repacking) and why"),
    ):
        commands.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)

    # Imported per command, so that a command loads only what it runs (the router never loads llama.cpp).
    if args.command == "backend":
        from localmodel_llamacpp.__main__ import main as backend_main

        return backend_main(rest)
    if args.command == "router":
        from localmodel_router.__main__ import main as router_main

        return router_main(rest)
    if args.command == "operator":
        from localmodel_operator.__main__ import main as operator_main

        return operator_main(rest)
    if args.command == "doctor":
        from localmodel_llamacpp.doctor import main as doctor_main

        return doctor_main(rest)
    if args.command == "fetch":
        return fetch_main(rest)
    if args.command == "bench":
        return bench_main(rest)
    if args.command == "plan":
        return plan_main(rest)
    return serve_main(rest, one_file=args.command == "run")


def fetch_main(argv: list[str]) -> int:
    from localmodel.fetch import FetchError, ModelCache, default_cache_dir, fetch
    from localmodel.logs import configure_logging
    from localmodel.sources import SourceError, parse_source

    parser = argparse.ArgumentParser(
        prog="localmodel fetch", description="Fetch a model file into the cache."
    )
    parser.add_argument("url", help="file:, https://, or hf://ORG/REPO/FILE.gguf")
    parser.add_argument("--sha256", help="expected SHA-256 (hex); a mismatch deletes the download")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="model cache folder")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    sha256 = args.sha256.lower() if args.sha256 else None
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        parser.error(f"--sha256 {args.sha256!r}: expected 64 hexadecimal digits")
    try:
        path = fetch(parse_source(args.url), ModelCache(args.cache_dir), sha256)
    except (FetchError, SourceError) as error:
        parser.exit(1, f"localmodel fetch: {error}\n")
    sys.stdout.write(f"{path}\n")
    return 0


def plan_main(argv: list[str]) -> int:
    import json

    from rich.console import Console

    from localmodel.cpus import available_cpus
    from localmodel.fit_report import Machine, available_memory_bytes, plan_manifest, plans_table
    from localmodel.manifests import load_manifests
    from localmodel.quantities import parse_bytes

    parser = argparse.ArgumentParser(
        prog="localmodel plan",
        description="Plan where each LocalModel's weights, KV cache and compute buffers go (RAM, GPUs) and "
        "whether they fit, reading only the model files' headers (range requests for https and hf). "
        "Exit status: 0 when every model fits, 1 when one does not, 2 for bad input.",
    )
    parser.add_argument("-f", "--filename", type=Path, action="append", required=True, help="manifest(s)")
    parser.add_argument("--gpus", type=int, help="GPUs per replica (default: the spec's)")
    parser.add_argument("--gpu-memory", help="memory per GPU, e.g. 24Gi (default: not checked)")
    parser.add_argument(
        "--memory",
        help="RAM per replica, e.g. 16Gi (default: the spec's resources.memory, else this machine's)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per LocalModel")
    args = parser.parse_args(argv)
    try:
        gpu_memory = parse_bytes(args.gpu_memory) if args.gpu_memory else None
        memory = parse_bytes(args.memory) if args.memory else None
        if args.gpus is not None and args.gpus < 0:
            raise ValueError(f"--gpus {args.gpus}: expected 0 or more")
        manifests = [m for m in load_manifests(args.filename) if not m.model.spec.backend.address]
        machine = Machine(
            memory if memory is not None else available_memory_bytes(),
            available_cpus(),
            args.gpus,
            gpu_memory,
            ram_given=memory is not None,
        )
        plans = [plan_manifest(manifest, machine) for manifest in manifests]
    except (ValueError, OSError) as error:  # manifests, sizes, sources, unreadable headers (FitError too)
        parser.exit(USAGE_ERROR, f"localmodel plan: {error}\n")
    if args.json:
        sys.stdout.write(json.dumps([named.as_json() for named in plans], indent=2) + "\n")
    else:
        Console().print(plans_table(plans))
    return 0 if all(named.plan.fits for named in plans) else 1


def bench_main(argv: list[str]) -> int:
    import os

    from rich.console import Console

    from localmodel.loadgen.bench import BenchOptions, bench, parse_concurrencies
    from localmodel.loadgen.client import api_base

    parser = argparse.ArgumentParser(
        prog="localmodel bench",
        description="Send concurrent streamed chat requests to an OpenAI-compatible server and report "
        "aggregate tokens/s, time to first token and latency (p50/p95) at each concurrency.",
    )
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8080 (/v1 is added to a bare host)")
    parser.add_argument("--model", help="the model to ask (default: the first the server lists)")
    parser.add_argument("--concurrency", default="1,2,4,8", help="concurrent clients per level (1,2,4,8)")
    parser.add_argument("--requests", type=int, default=16, help="requests per level (16)")
    parser.add_argument("--max-tokens", type=int, default=128, help="max_tokens of every request (128)")
    parser.add_argument("--temperature", type=float, default=0.0, help="temperature of every request (0)")
    parser.add_argument("--warmup", type=int, default=1, help="requests before measuring, not counted (1)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take (300)")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "none"), help="bearer key")
    parser.add_argument("--json", type=Path, help="also write every figure (each request too) to this file")
    args = parser.parse_args(argv)
    try:
        api_base(args.url)
        concurrencies = parse_concurrencies(args.concurrency)
    except ValueError as error:
        parser.error(str(error))
    if args.requests < max(concurrencies):
        parser.error(f"--requests {args.requests}: at least the highest --concurrency, {max(concurrencies)}")
    if args.max_tokens < 1 or args.warmup < 0 or args.timeout <= 0:
        parser.error("--max-tokens must be at least 1, --warmup at least 0, --timeout above 0")
    options = BenchOptions(
        url=args.url,
        model=args.model,
        concurrencies=concurrencies,
        requests=args.requests,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        api_key=args.api_key,
        timeout=args.timeout,
        warmup=args.warmup,
        json_path=args.json,
    )
    try:
        return asyncio.run(bench(options, Console()))
    except KeyboardInterrupt:
        return 130


def serve_main(argv: list[str], one_file: bool) -> int:
    import yaml

    from localmodel.cpus import available_cpus
    from localmodel.fetch import FetchError, ModelCache
    from localmodel.local.fit_check import DoesNotFitError, preflight
    from localmodel.local.runtime import LocalSettings, resolve_models, run, threads_per_backend
    from localmodel.logs import configure_logging
    from localmodel.manifests import Manifest, load_manifests, parse_manifest
    from localmodel.sources import SourceError

    parser = _run_parser() if one_file else _serve_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        if one_file:
            where = Path.cwd() / "(command line)"
            manifests = [Manifest(parse_manifest(_manifest_for_file(args), "the model"), where)]
        else:
            manifests = load_manifests(args.filename)
        router = _router_settings(args)
    except (ValueError, OSError, yaml.YAMLError) as error:  # manifests, settings, a bad --config
        parser.exit(USAGE_ERROR, f"{parser.prog}: {error}\n")
    settings = LocalSettings(router, ModelCache(args.cache_dir), args.startup_timeout, args.drain_seconds)
    try:
        models = resolve_models(manifests, settings.cache)
        if not args.skip_fit_check:
            preflight(models, threads_per_backend(models, available_cpus()) or available_cpus())
        return asyncio.run(run(models, settings))
    except DoesNotFitError as error:
        parser.exit(USAGE_ERROR, f"{parser.prog}: {error} (--skip-fit-check starts it anyway)\n")
    except (FetchError, SourceError, OSError) as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    except KeyboardInterrupt:  # Ctrl-C while fetching; once serving, local mode handles it itself
        return 130


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="localmodel serve", description="Serve LocalModel manifests on this machine."
    )
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        type=Path,
        required=True,
        help="a manifest file (multi-document YAML too) or a folder of them; repeatable",
    )
    _add_serving_flags(parser)
    return parser


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmodel run", description="Serve one GGUF model.")
    parser.add_argument("model", help="a GGUF file, or a file:, https:// or hf:// URL")
    parser.add_argument("--name", help="the name clients send as `model` (default: from the file name)")
    parser.add_argument("--sha256", help="expected SHA-256 of the file")
    parser.add_argument("--task", action="append", choices=["chat", "completion", "embedding", "rerank"])
    parser.add_argument("--context-size", type=int, help="KV cache size in tokens")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--gpu-layers", type=int, help="layers to offload to the GPU (-1: all)")
    _add_serving_flags(parser)
    return parser


def _add_serving_flags(parser: argparse.ArgumentParser) -> None:
    from localmodel.fetch import default_cache_dir

    parser.add_argument("--host", help="address the API listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port the API listens on (default 8080)")
    parser.add_argument("--config", type=Path, help="YAML file with router settings (see README)")
    parser.add_argument("--api-key", action="append", default=[], help="accepted API key (repeatable)")
    parser.add_argument("--api-key-file", type=Path, help="a file of accepted API keys, one per line")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="model cache folder")
    parser.add_argument(
        "--startup-timeout", type=float, default=600.0, help="seconds a backend may take to load its model"
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=30.0, help="on stop, seconds for requests in flight to finish"
    )
    parser.add_argument(
        "--skip-fit-check",
        action="store_true",
        help="start even when the fit plan says the models would not fit this machine's memory",
    )
    parser.add_argument("--log-level", default="INFO")


def _router_settings(args: argparse.Namespace) -> Any:
    """The router's settings in local mode: flags over `--config` over `LOCALMODEL_ROUTER_*` variables."""
    from localmodel.settings_file import merge_settings, read_settings_file
    from localmodel_router.settings import RouterSettings

    values = read_settings_file(args.config, "router settings")
    if values.get("models"):
        raise ValueError(f"{args.config}: `models` belong in LocalModel manifests in local mode")
    flags = {
        "host": args.host,
        "port": args.port,
        "api_keys": args.api_key or None,
        "api_keys_file": args.api_key_file,
    }
    return merge_settings(RouterSettings, values, flags)


def _manifest_for_file(args: argparse.Namespace) -> dict[str, Any]:
    """A LocalModel document for `localmodel run`, named after the file."""
    url = args.model if re.match(r"^[a-z][a-z0-9+]*:", args.model) else Path(args.model).resolve().as_uri()
    stem = Path(url.rsplit("/", 1)[-1]).stem
    name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:63].strip("-") or "model"
    engine = {"contextSize": args.context_size, "threads": args.threads, "gpuLayers": args.gpu_layers}
    spec: dict[str, Any] = {
        "model": {"url": url, **({"sha256": args.sha256} if args.sha256 else {})},
        "servedName": args.name or stem,
        "backend": {"engine": {key: value for key, value in engine.items() if value is not None}},
    }
    if args.task:
        spec["tasks"] = args.task
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": name},
        "spec": spec,
    }


if __name__ == "__main__":
    sys.exit(main())
