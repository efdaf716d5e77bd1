from __future__ import annotations

import os
from pathlib import Path

import pytest

from localmodel.cpus import available_cpus, cgroup_cpu_quota


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "200000 100000"}, 2.0),  # cgroup v2: a pod with a 2-CPU limit
        ({"cpu.max": "150000 100000"}, 1.5),
        ({"cpu.max": "max 100000"}, None),  # no limit
        ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0),  # cgroup v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({"cpu.max": "garbage"}, None),
        ({}, None),  # no cgroup files at all
    ],
)
def test_cgroup_quota(tmp_path: Path, files: dict[str, str], quota: float | None) -> None:
    assert cgroup_cpu_quota(write(tmp_path, files)) == quota


def test_available_cpus_is_affinity_capped_by_the_quota_rounded_down(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == affinity  # no quota
    assert available_cpus(write(tmp_path / "one", {"cpu.max": "150000 100000"})) == 1
    assert available_cpus(write(tmp_path / "tiny", {"cpu.max": "10000 100000"})) == 1  # never 0
    assert available_cpus(write(tmp_path / "big", {"cpu.max": "6400000 100000"})) == affinity
