from __future__ import annotations

import pytest

from localmodel_llamacpp.engine import parse_buffer_lines
from localmodel_llamacpp.repack import decide_repack, parse_cpu_flags, parse_system_info

AMX_CPU = {"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"}
EPYC_CPU = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
ARM_CPU = {"asimd", "asimddp", "i8mm", "sve"}
AMX_BUILD = {"AVX2": "1", "AVX512": "1", "AVX512_VNNI": "1", "AMX_INT8": "1", "REPACK": "1"}
PORTABLE_BUILD = {"AVX2": "1", "FMA": "1", "REPACK": "1"}  # the images: GGML_NATIVE=off, no AMX kernels
ARM_BUILD = {"NEON": "1", "DOTPROD": "1", "MATMUL_INT8": "1", "REPACK": "1"}


@pytest.mark.parametrize(
    ("mode", "cpu", "build", "repack", "says"),
    [
        # auto: off exactly where llama.cpp's AMX kernels would run
        ("auto", AMX_CPU, AMX_BUILD, False, "issue 20824"),
        ("auto", AMX_CPU, PORTABLE_BUILD, True, "no AMX kernels"),
        ("auto", EPYC_CPU, PORTABLE_BUILD, True, "no AMX here"),
        ("auto", EPYC_CPU, {**AMX_BUILD}, True, "no AMX here"),  # an AMX wheel on a CPU without AMX
        ("auto", ARM_CPU, ARM_BUILD, True, "no AMX here"),
        ("auto", set(), {}, True, "no AMX here"),  # nothing known: llama.cpp's own default
        # the option overrides the choice both ways
        ("on", AMX_CPU, AMX_BUILD, True, "may crash"),
        ("on", EPYC_CPU, PORTABLE_BUILD, True, "as the option asks"),
        ("off", EPYC_CPU, PORTABLE_BUILD, False, "as the option asks"),
        ("off", ARM_CPU, ARM_BUILD, False, "as the option asks"),
    ],
)
def test_repack_decision(mode: str, cpu: set[str], build: dict[str, str], repack: bool, says: str) -> None:
    decision = decide_repack(mode, cpu, build)
    assert decision.repack is repack
    assert says in decision.reason


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="repack: expected one of auto, on, off"):
        decide_repack("maybe", EPYC_CPU, PORTABLE_BUILD)


def test_cpu_flags_from_x86_and_arm_cpuinfo() -> None:
    x86 = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 amx_tile amx_int8\n\nprocessor\t: 1\n"
    )
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd asimddp i8mm sve\nCPU part\t: 0xd40\n"
    assert parse_cpu_flags(x86) == {"fpu", "avx2", "amx_tile", "amx_int8"}
    assert parse_cpu_flags(arm) == {"fp", "asimd", "asimddp", "i8mm", "sve"}
    assert parse_cpu_flags("processor : 0\n") == frozenset()


def test_system_info_as_a_dict() -> None:
    text = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 | "
    assert parse_system_info(text) == {
        "SSE3": "1", "AVX2": "1", "AVX512": "1", "AMX_INT8": "1", "OPENMP": "1", "REPACK": "1"
    }  # fmt: skip
    two_backends = "CUDA : ARCHS = 900 | USE_GRAPHS = 1 | CPU : AVX2 = 1 | "
    assert parse_system_info(two_backends) == {"ARCHS": "900", "USE_GRAPHS": "1", "AVX2": "1"}


def test_weight_buffers_from_llama_cpp_load_lines() -> None:
    lines = [
        "load_tensors:   CPU_REPACK model buffer size =    12.66 MiB",
        "load_tensors:   CPU_Mapped model buffer size =   235.16 MiB",
        "load_tensors:          AMX model buffer size =    40.00 MiB",
        "load_tensors: something else entirely",
    ]
    assert parse_buffer_lines(lines) == {"CPU_REPACK": 12.66, "CPU_Mapped": 235.16, "AMX": 40.0}
