"""Backend pods' statuses, as the kubelet writes them, → the crash a LocalModel reports."""

from __future__ import annotations

from typing import Any

import pytest

from localmodel_operator.pod_crashes import Crash, latest_crash, pod_crash

# What llama.cpp leaves on stderr when its AMX kernels segfault (the kubelet keeps the log tail).
SEGFAULT_LOG = (
    "load_tensors: CPU_REPACK model buffer size = 72.00 MiB\n"
    "llama_context: n_ctx = 4096\n"
    "Fatal Python error: Segmentation fault\n"
    "\n"
    "Current thread 0x00007f3a (most recent call first):\n"
    '  File "/app/localmodel_llamacpp/engine.py", line 88 in load\n'
)


def terminated(exit_code: int, reason: str = "Error", message: str = "", at: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": "2026-03-01T10:00:00Z",
        "finishedAt": at or "2026-03-01T10:00:05Z",
        "containerID": f"containerd://{exit_code:064d}",
    }
    return {"terminated": {**state, "message": message}} if message else {"terminated": state}


def pod(
    name: str = "m-5d8f9c-x2k4q",
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    restarts: int = 0,
    ready: bool = False,
    container: str = "backend",
    **metadata: Any,
) -> dict[str, Any]:
    """A backend pod of model m, with the status a kubelet writes."""
    status: dict[str, Any] = {
        "name": container,
        "image": "localmodel/backend-llama-cpp:0.1.0",
        "ready": ready,
        "started": ready,
        "restartCount": restarts,
        "state": state or {"running": {"startedAt": "2026-03-01T10:00:00Z"}},
    }
    if last is not None:
        status["lastState"] = last
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ai", "labels": {"localmodel.dev/model": "m"}, **metadata},
        "status": {"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": [status]},
    }


BACKOFF = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}

# (pod, what the message says, how many restarts, in CrashLoopBackOff)
CRASHES: dict[str, tuple[dict[str, Any], list[str], int, bool]] = {
    "segfault in CrashLoopBackOff": (
        pod(state=BACKOFF, last=terminated(139, message=SEGFAULT_LOG), restarts=3),
        [
            "The backend of pod m-5d8f9c-x2k4q (restarts: 3, in CrashLoopBackOff) was killed by SIGSEGV "
            "(signal 11).",
            "--repack off",
            "Last output: load_tensors: CPU_REPACK model buffer size = 72.00 MiB | llama_context: n_ctx = "
            "4096 | Fatal Python error: Segmentation fault | Current thread",
        ],
        3,
        True,
    ),
    "out of memory, restarted and loading again": (
        pod(last=terminated(137, reason="OOMKilled"), restarts=1),
        ["(restarts: 1, OOMKilled) was killed by SIGKILL (signal 9).", "out-of-memory killer", "memory"],
        1,
        False,
    ),
    "exit 1, just now (not restarted yet)": (
        pod(state=terminated(1, message="error: model file not found: /models/m.gguf"), restarts=0),
        ["(restarts: 1) exited with code 1.", "Last output: error: model file not found: /models/m.gguf"],
        1,
        False,
    ),
    "the signal the kubelet names": (
        pod(
            state=BACKOFF, last={"terminated": {"exitCode": 134, "signal": 6, "reason": "Error"}}, restarts=2
        ),
        ["was killed by SIGABRT (signal 6).", "GGML_ASSERT"],
        2,
        True,
    ),
}


@pytest.mark.parametrize("case", CRASHES)
def test_a_crashed_backend_is_explained(case: str) -> None:
    found, says, restarts, crash_loop = CRASHES[case]
    crash = pod_crash(found)
    assert crash is not None
    for words in says:
        assert words in crash.message
    assert (crash.pod, crash.restarts, crash.crash_loop) == ("m-5d8f9c-x2k4q", restarts, crash_loop)


NOT_CRASHED: dict[str, dict[str, Any]] = {
    "running and ready": pod(ready=True),
    "ready again after an old crash": pod(last=terminated(139), restarts=1, ready=True),
    "starting, never died": pod(state={"waiting": {"reason": "ContainerCreating"}}),
    "no lastState at all": pod(),
    "no container status yet": {"metadata": {"name": "m-1"}, "status": {"phase": "Pending"}},
    "stopped on purpose (rollout, scale down)": pod(
        state=terminated(143), deletionTimestamp="2026-03-01T10:00:06Z"
    ),
    "exited 0": pod(state=BACKOFF, last=terminated(0, reason="Completed"), restarts=1),
    "another container crashed, not the backend": pod(
        state=BACKOFF, last=terminated(139), restarts=4, container="sidecar"
    ),
}


@pytest.mark.parametrize("case", NOT_CRASHED)
def test_no_crash_to_report(case: str) -> None:
    assert pod_crash(NOT_CRASHED[case]) is None


def test_the_latest_crash_of_the_model_is_the_one_reported() -> None:
    pods = [
        pod("m-a", state=BACKOFF, last=terminated(139, at="2026-03-01T10:00:05Z"), restarts=5),
        pod("m-b", last=terminated(137, reason="OOMKilled", at="2026-03-01T10:02:00Z"), restarts=1),
        pod("m-c", ready=True),
    ]
    latest = latest_crash(pods)
    assert latest is not None and (latest.pod, latest.exit.signal) == ("m-b", 9)
    assert latest_crash([pod("m-c", ready=True)]) is None
    assert latest_crash([]) is None


def test_one_crash_is_recognised_in_every_view_of_it_and_the_next_is_new() -> None:
    # The kubelet shows a death in `state` first (restart not counted yet), then in `lastState` while
    # it waits in CrashLoopBackOff, then while the container runs again.
    just_died = pod_crash(pod(state=terminated(139), last=terminated(139, at="earlier"), restarts=2))
    backing_off = pod_crash(pod(state=BACKOFF, last=terminated(139), restarts=3))
    running_again = pod_crash(pod(last=terminated(139), restarts=3))
    views = [just_died, backing_off, running_again]
    assert all(isinstance(view, Crash) for view in views)
    messages = [view.message for view in views if view is not None]
    assert len(set(messages)) == 2  # CrashLoopBackOff or not: told differently...
    for view in views:
        assert view is not None and all(view.told_in(message) for message in messages)  # ...same crash
    assert {view.key for view in views if view is not None} == {("m-5d8f9c-x2k4q", 3)}
    next_crash = pod_crash(pod(state=BACKOFF, last=terminated(139), restarts=4))
    assert next_crash is not None and not any(next_crash.told_in(message) for message in messages)
    other_pod = pod_crash(pod("m-other", state=BACKOFF, last=terminated(139), restarts=3))
    assert other_pod is not None and not any(other_pod.told_in(message) for message in messages)
    assert len({next_crash.key, other_pod.key, ("m-5d8f9c-x2k4q", 3)}) == 3
