"""The `localmodel` command: one subcommand per entry point; each parses its own flags."""

from __future__ import annotations

import argparse
import sys

from localmodel import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localmodel", description=__doc__, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"localmodel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("backend", help="run the llama.cpp gRPC backend", add_help=False)
    commands.add_parser("router", help="run the OpenAI-compatible router", add_help=False)
    args, rest = parser.parse_known_args(argv)

    # Imported per command, so that a command loads only what it runs (the router never loads llama.cpp).
    if args.command == "backend":
        from localmodel_llamacpp.__main__ import main as backend_main

        return backend_main(rest)
    if args.command == "router":
        from localmodel_router.__main__ import main as router_main

        return router_main(rest)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
