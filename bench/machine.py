"""The machine a benchmark ran on, and whether anything else used its CPUs while it measured.

Figures from a shared machine are only worth reporting when nothing else ran: `CpuWatch` reads the
machine's CPU time (/proc/stat) and that of this process and all its descendants (/proc/PID/stat) at
each mark, so each interval splits into our CPU time, other processes' and the hypervisor's steal.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def describe(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """CPU model and count (as `nproc` and `lscpu` say), memory, Python and package versions."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = {
        key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lscpu.splitlines())
    }
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    info: dict[str, Any] = {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu_model": fields.get("Model name", "?"),
        "cores_per_socket": fields.get("Core(s) per socket", "?"),
        "threads_per_core": fields.get("Thread(s) per core", "?"),
        "hypervisor": fields.get("Hypervisor vendor", "none"),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for package in packages:
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = "not installed"
    return info


def code_state(root: Path) -> dict[str, Any]:
    """Which code ran: the git commit of `root` and whether its tree had changes, where it is a checkout."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "HEAD")
    if not head:
        return {"root": str(root), "git": "not a git checkout"}
    changed = git("status", "--porcelain").splitlines()
    return {"root": str(root), "git_head": head, "changed_files": len(changed)}


@dataclass(frozen=True)
class CpuShare:
    """One interval: seconds of wall time, and CPU seconds used by us, by other processes, and stolen."""

    wall: float
    ours: float
    others: float
    steal: float

    def others_share(self, cpus: int) -> float:
        """Other processes' and the hypervisor's CPU time as a share of the machine's capacity."""
        return (self.others + self.steal) / (self.wall * cpus) if self.wall > 0 else 0.0


class CpuWatch:
    def __init__(self) -> None:
        self._last = _reading()
        self.intervals: list[CpuShare] = []

    def mark(self) -> None:
        """Close the interval since the previous mark (or since this watch was made)."""
        now = _reading()
        wall, busy, steal, ours = (b - a for a, b in zip(self._last, now, strict=True))
        self.intervals.append(CpuShare(wall, ours, max(busy - ours, 0.0), steal))
        self._last = now


def _reading() -> tuple[float, float, float, float]:
    """(monotonic seconds, machine busy CPU seconds, stolen CPU seconds, our process tree's CPU seconds)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    busy = (user + nice + system + irq + softirq) / TICK
    ours = sum(_cpu_seconds(pid) for pid in _descendants(os.getpid()))
    return time.monotonic(), busy, steal / TICK, ours


def _descendants(root: int) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended while we looked
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 for one that has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK
