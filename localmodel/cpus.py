"""How many CPUs this process may use: the default llama.cpp thread count.

`os.cpu_count()` counts the machine's cores. In a pod that is the node's, not the pod's: a backend with
a 2-CPU limit on a 64-core node would start 64 threads, and the CFS quota would then stall every decode
step. So the count is the process's CPU affinity (what `cpuset` and `taskset` allow), capped by the
cgroup's CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded down.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(affinity, int(quota)) if quota is not None else affinity)


def cgroup_cpu_quota(root: Path) -> float | None:
    """The CPU quota in CPUs, or None when there is none (or no cgroup file to read)."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else _ratio(quota, period or "100000")
    for folder in ("cpu", "cpu,cpuacct"):
        v1_quota = _read(root / folder / "cpu.cfs_quota_us")
        v1_period = _read(root / folder / "cpu.cfs_period_us")
        if v1_quota is not None and v1_period is not None:
            return None if v1_quota.startswith("-") else _ratio(v1_quota, v1_period)
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        value = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
