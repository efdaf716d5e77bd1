"""Pure: whether llama.cpp may put the weights into its "extra" CPU buffer types (repacking), and why.

llama.cpp can move weights into buffers laid out for faster kernels: the x86/ARM repack buffer (Q4_0,
Q4_K, IQ4_NL, Q8_0 interleaved for AVX2/AVX-512/NEON), KleidiAI on ARM, and Intel AMX tiles. The AMX
kernels of the llama.cpp that llama-cpp-python 0.3.36 vendors crash with SIGSEGV in
`ggml_backend_amx_mul_mat` on Sapphire/Emerald/Granite Rapids (llama.cpp issue 20824, open). The same
switch (`llama_model_params.use_extra_bufts`, llama-server's `--no-repack`) turns all of them off: there
is no finer one. So `auto` turns it off only where AMX kernels would run — an AMX build on an AMX CPU —
and keeps repacking everywhere else, where it is safe and (for the types it covers) faster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPACK_MODES = ("auto", "on", "off")
# /proc/cpuinfo flags of the AMX units llama.cpp's kernels use (int8 tiles; bf16 is not used for weights).
_AMX_FLAGS = frozenset({"amx_int8", "amx_tile"})
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class RepackDecision:
    repack: bool  # llama_model_params.use_extra_bufts
    reason: str


def decide_repack(mode: str, cpu_flags: Iterable[str], build_features: Mapping[str, str]) -> RepackDecision:
    """`mode` (auto, on, off) for a CPU with `cpu_flags` and a llama.cpp build with `build_features`."""
    if mode not in REPACK_MODES:
        raise ValueError(f"repack: expected one of {', '.join(REPACK_MODES)}, got {mode!r}")
    amx_cpu = _AMX_FLAGS <= set(cpu_flags)
    amx_build = build_features.get("AMX_INT8") == "1"
    if mode == "on":
        warning = (
            " (this CPU and build have AMX: llama.cpp issue 20824 may crash it)"
            if amx_cpu and amx_build
            else ""
        )
        return RepackDecision(True, f"repack on, as the option asks{warning}")
    if mode == "off":
        return RepackDecision(False, "repack off, as the option asks")
    if amx_cpu and amx_build:
        return RepackDecision(
            False,
            "repack off: this CPU has AMX and this llama.cpp build has AMX kernels, which crash "
            "(llama.cpp issue 20824); `repack:on` overrides",
        )
    if amx_cpu:
        return RepackDecision(True, "repack on: this CPU has AMX but this llama.cpp build has no AMX kernels")
    return RepackDecision(
        True, "repack on: no AMX here; llama.cpp repacks the weight types it has faster kernels for"
    )


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The CPU feature flags in /proc/cpuinfo text (x86 `flags`, ARM `Features`), from its first CPU."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def parse_system_info(text: str) -> dict[str, str]:
    """llama.cpp's `llama_print_system_info()` ("CPU : AVX2 = 1 | AMX_INT8 = 1 | ...") as a dict."""
    features: dict[str, str] = {}
    for part in text.replace(";", "|").split("|"):
        key, sep, value = part.partition("=")
        if sep:
            name = key.split(":")[-1].strip()  # "CPU : SSE3" -> "SSE3"
            features[name] = value.strip()
    return features


def read_cpu_flags(path: Path = CPUINFO) -> frozenset[str]:
    try:
        return parse_cpu_flags(path.read_text())
    except OSError:
        return frozenset()  # not Linux, or no /proc: no AMX to avoid that we could know of
