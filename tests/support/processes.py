"""Child processes as Linux reports them (/proc), to check what local mode starts and leaves behind."""

from __future__ import annotations

from pathlib import Path

from localmodel.backend_types import BACKENDS


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the task ended while we looked
            continue
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def backends_of(pid: int) -> dict[int, list[str]]:
    """Backend processes started by local mode process `pid`: pid → command line."""
    modules = {kind.module for kind in BACKENDS.values()}
    return {child: line for child in children(pid) if modules & set(line := command_line(child))}
