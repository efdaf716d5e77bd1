"""`localmodel doctor`: what this machine and this llama.cpp build can run, and what the backend will use.

The CPU features llama.cpp was compiled with and those the CPU has, the GPU backends in the build, the
default thread count, and whether weights will be repacked (and why). A crash report points here.
"""

from __future__ import annotations

import argparse
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import llama_cpp
from rich.console import Console
from rich.table import Table

from localmodel.cpus import available_cpus
from localmodel_llamacpp.engine import build_features
from localmodel_llamacpp.repack import CPUINFO, REPACK_MODES, decide_repack, read_cpu_flags

# The CPU flags that decide which llama.cpp kernels run (x86 and ARM names from /proc/cpuinfo).
NOTABLE_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve", "sve2", "sme",
)  # fmt: skip


def collect(repack_mode: str = "auto") -> dict[str, Any]:
    """Everything the report shows, as plain values (also the --json output)."""
    flags = read_cpu_flags()
    features = build_features()
    decision = decide_repack(repack_mode, flags, features)
    return {
        "machine": platform.machine(),
        "cpuModel": _cpu_model(),
        "cpuFlags": [flag for flag in NOTABLE_FLAGS if flag in flags],
        "llamaCppPython": _version("llama-cpp-python"),
        "buildFeatures": features,
        "gpuOffload": bool(llama_cpp.llama_supports_gpu_offload()),
        "defaultThreads": available_cpus(),
        "repack": {"mode": repack_mode, "on": decision.repack, "reason": decision.reason},
    }


def render(report: dict[str, Any], console: Console) -> None:
    table = Table(title="localmodel doctor: the llama.cpp backend on this machine", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("machine", f"{report['machine']}, {report['cpuModel']}")
    table.add_row("CPU flags", " ".join(report["cpuFlags"]) or "(none of note)")
    table.add_row("llama-cpp-python", report["llamaCppPython"])
    compiled = [name for name, value in report["buildFeatures"].items() if value == "1"]
    table.add_row("llama.cpp build", " ".join(compiled) or "(no CPU features reported)")
    table.add_row("GPU offload", "yes" if report["gpuOffload"] else "no (CPU-only build)")
    table.add_row("default threads", str(report["defaultThreads"]))
    repack = report["repack"]
    table.add_row(f"repack ({repack['mode']})", repack["reason"])
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="localmodel doctor", description="Show what llama.cpp will use on this machine, and why."
    )
    parser.add_argument("--repack", choices=REPACK_MODES, default="auto", help="the mode to explain")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = collect(args.repack)
    if args.json:
        print(json.dumps(report, indent=2))  # noqa: T201  (the command's output)
    else:
        render(report, Console())
    return 0


def _cpu_model(cpuinfo: Path = CPUINFO) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("model name", "Model", "CPU part"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"
