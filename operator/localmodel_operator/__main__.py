"""`localmodel operator` (also `python -m localmodel_operator`): run the kopf operator.

Settings come from `--config FILE` (YAML) and `LOCALMODEL_OPERATOR_*` variables; the Kubernetes API from
the pod's service account, or the kubeconfig (`KUBECONFIG`) outside a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import kopf
from pydantic import ValidationError

from localmodel.logs import configure_logging
from localmodel.settings_file import SettingsFileError
from localmodel_operator import handlers  # noqa: F401  (kopf registers handlers on import)
from localmodel_operator.settings import load_settings
from localmodel_operator.startup import initial_memo


def main(argv: list[str] | None = None, prog: str = "localmodel operator") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Run the LocalModel operator (kopf).")
    parser.add_argument("--config", type=Path, help="YAML file with operator settings (see README)")
    parser.add_argument(
        "--liveness", default=None, help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = load_settings(args.config)
    except SettingsFileError as error:
        parser.exit(2, f"{prog}: {error}\n")
    except ValidationError as error:
        parser.exit(2, f"{prog}: invalid settings: {error}\n")
    asyncio.run(
        kopf.operator(
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=args.liveness,
            memo=initial_memo(settings),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m localmodel_operator"))
