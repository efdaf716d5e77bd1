"""Pure: a model's backend pods → the most recent crash of their backend container, in words.

The kubelet reports a container that died in `state.terminated` until it starts it again, then in
`lastState.terminated` (while it waits in CrashLoopBackOff, and after), with the log tail it kept under
`terminationMessagePolicy: FallbackToLogsOnError` in `message`. localmodel.crashes says what that means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from localmodel.crashes import BackendExit
from localmodel_operator.builders import BACKEND_CONTAINER

CRASH_LOOP = "CrashLoopBackOff"
# `reason`s of a terminated container that say no more than its exit code does.
_PLAIN_REASONS = {"", "Error", "Completed"}


@dataclass(frozen=True)
class Crash:
    """One death of a pod's backend container."""

    pod: str
    exit: BackendExit
    restarts: int  # the container's restarts, counting the one this crash brings
    crash_loop: bool  # Kubernetes waits before starting it again
    reason: str = ""  # the kubelet's word for it, e.g. OOMKilled
    finished_at: str = ""  # RFC 3339, as the kubelet wrote it

    @property
    def subject(self) -> str:
        """'The backend of pod m-5d8f-x (restarts: 3' — the part every message about this crash shares."""
        return f"The backend of pod {self.pod} (restarts: {self.restarts}"

    @property
    def key(self) -> tuple[str, int]:
        """The same for every view of this crash (it waits, it runs again); another for the next."""
        return (self.pod, self.restarts)

    @property
    def message(self) -> str:
        """What happened, what to do, the last log lines (for the Ready condition and the Event)."""
        extra = "".join(
            [
                f", {self.reason}" if self.reason not in _PLAIN_REASONS else "",
                f", in {CRASH_LOOP}" if self.crash_loop else "",
            ]
        )
        return self.exit.describe(subject=f"{self.subject}{extra})")

    def told_in(self, message: str) -> bool:
        """Whether `message` (an earlier condition's) is about this very crash: the same pod and restart,
        whether or not it was in CrashLoopBackOff then."""
        return message.startswith((f"{self.subject})", f"{self.subject},"))


def latest_crash(pods: Iterable[dict[str, Any]]) -> Crash | None:
    """The most recent crash among pods that are not serving, or None when none crashed."""
    crashes = [crash for pod in pods if (crash := pod_crash(pod)) is not None]
    return max(crashes, key=lambda crash: (crash.finished_at, crash.restarts), default=None)


def pod_crash(pod: dict[str, Any]) -> Crash | None:
    """The last crash of a pod's backend container, while it is not ready (a ready one has recovered)."""
    metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
    if metadata.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None  # a pod being stopped exits by SIGTERM; a finished one is replaced
    container = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == BACKEND_CONTAINER), None
    )
    if container is None or container.get("ready"):
        return None
    state = container.get("state") or {}
    restarts = int(container.get("restartCount") or 0)
    # A container that has just died is in `state` (its restart not counted yet); else in `lastState`.
    terminated = state.get("terminated")
    if terminated:
        restarts += 1
    else:
        terminated = (container.get("lastState") or {}).get("terminated")
    if not terminated or not terminated.get("exitCode"):
        return None  # never died, or exited 0 (nothing to explain)
    return Crash(
        pod=str(metadata.get("name", "")),
        exit=BackendExit.from_container(
            int(terminated["exitCode"]), terminated.get("signal"), terminated.get("message") or ""
        ),
        restarts=restarts,
        crash_loop=(state.get("waiting") or {}).get("reason") == CRASH_LOOP,
        reason=str(terminated.get("reason") or ""),
        finished_at=str(terminated.get("finishedAt") or ""),
    )
