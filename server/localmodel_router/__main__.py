"""`localmodel router` (also `python -m localmodel_router`): the OpenAI-compatible front door.

Static discovery: models come from `--model NAME=HOST:PORT[,HOST:PORT...]` flags, `--alias ALIAS=NAME`
flags, and/or a YAML `--config` file with the same settings (see README). Kubernetes discovery
(`--discovery kubernetes`): models are the cluster's LocalModels, reached through their EndpointSlices.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from localmodel.logs import configure_logging
from localmodel.settings_file import SettingsFileError, merge_settings, read_settings_file
from localmodel_router.app import create_app
from localmodel_router.discovery import Discovery
from localmodel_router.discovery.kubernetes import KubernetesDiscovery
from localmodel_router.discovery.static import StaticDiscovery
from localmodel_router.settings import RouterSettings


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="OpenAI-compatible API over localmodel backends.")
    parser.add_argument("--config", type=Path, help="YAML file with router settings and models")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT[,HOST:PORT]",
        help="a model's backends",
    )
    parser.add_argument("--alias", action="append", default=[], metavar="ALIAS=NAME", help="another name")
    parser.add_argument(
        "--discovery", choices=["static", "kubernetes"], help="where models come from (default static)"
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="kubernetes discovery: a namespace to watch (repeatable; default all)",
    )
    parser.add_argument("--api-key", action="append", default=[], help="accepted API key (repeatable)")
    parser.add_argument("--api-key-file", type=Path, help="a file of accepted API keys, one per line")
    parser.add_argument("--log-level", default="INFO")
    return parser


def settings_from(args: argparse.Namespace) -> RouterSettings:
    """Settings from flags over the config file over `LOCALMODEL_ROUTER_*` variables (flags win).

    `--model` flags add to the file's models, and `--alias` flags name any of them.
    """
    values = read_settings_file(args.config, "router settings")
    models: list[dict[str, Any]] = list(values.pop("models", None) or [])
    for flag in args.model:
        name, _, endpoints = flag.partition("=")
        if not name or not endpoints:
            raise SystemExit(f"--model {flag!r}: expected NAME=HOST:PORT[,HOST:PORT...]")
        models.append({"name": name, "endpoints": endpoints.split(",")})
    by_name = {model["name"]: model for model in models}
    for flag in args.alias:
        alias, _, name = flag.partition("=")
        if name not in by_name:
            raise SystemExit(
                f"--alias {flag!r}: no model named {name!r} (models: {', '.join(by_name) or 'none'})"
            )
        by_name[name].setdefault("aliases", []).append(alias)
    flags = {
        "host": args.host,
        "port": args.port,
        "discovery": args.discovery,
        "api_keys": args.api_key or None,
        "api_keys_file": args.api_key_file,
        "namespaces": args.namespace or None,
        "models": models,
    }
    return merge_settings(RouterSettings, values, flags)


def main(argv: list[str] | None = None, prog: str = "localmodel router") -> int:
    args = build_parser(prog).parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = settings_from(args)
    except SettingsFileError as error:
        print(f"{prog}: {error}", file=sys.stderr)  # noqa: T201
        return 2
    except ValidationError as error:
        print(f"invalid router settings:\n{error}", file=sys.stderr)  # noqa: T201
        return 2
    discovery: Discovery
    if settings.discovery == "kubernetes":
        discovery = KubernetesDiscovery(settings.namespaces)
    else:
        discovery = StaticDiscovery(settings.models)
    app = create_app(settings, discovery)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m localmodel_router"))
