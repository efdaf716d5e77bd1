"""Why a backend process ended, in words a person can act on: the signal, the log tail, a known cause.

One definition for both runtimes: local mode reads a child's return code and stderr; the operator reads a
container's `lastState.terminated` (exit code 128+N for signal N, and the log tail Kubernetes keeps in
`message` under `terminationMessagePolicy: FallbackToLogsOnError`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass

# Lines of a crashed process's output worth showing: enough for faulthandler's report and the last logs.
TAIL_LINES = 20
_OUTPUT_LABEL = "Last output: "
# Shells and container runtimes report a process killed by signal N as exit code 128 + N.
_SIGNAL_EXIT_BASE = 128

# What usually causes each signal in a llama.cpp backend, and what to do about it.
_HINTS: dict[signal.Signals, str] = {
    signal.SIGSEGV: (
        "Most likely a crash inside llama.cpp. On Intel CPUs with AMX (Sapphire Rapids and newer) "
        "llama.cpp's AMX kernels are known to crash (llama.cpp issue 20824): start the backend with "
        "`--repack off` (engine option `repack:off`). `localmodel doctor` shows which kernels this machine "
        "uses."
    ),
    signal.SIGILL: (
        "llama.cpp uses CPU instructions this CPU lacks: it was compiled for another CPU. Rebuild "
        "llama-cpp-python on this machine (`pip install --no-cache-dir --force-reinstall llama-cpp-python`) "
        "or run an image built for this CPU family."
    ),
    signal.SIGKILL: (
        "killed from outside, most often by the kernel's out-of-memory killer: give the backend more memory "
        "or lower its context size or parallel slots."
    ),
    signal.SIGABRT: "llama.cpp aborted on a failed check (GGML_ASSERT); the log lines say which.",
    signal.SIGBUS: "the model file changed or was cut short while mapped; check the file and its disk.",
}


@dataclass(frozen=True)
class BackendExit:
    """How a backend process ended: an exit code or a signal, and the last lines it wrote."""

    code: int | None = None
    signal: int | None = None
    log_tail: tuple[str, ...] = ()

    @classmethod
    def from_returncode(cls, returncode: int, log_tail: Iterable[str] = ()) -> BackendExit:
        """From a Python subprocess return code (-N: killed by signal N)."""
        tail = _tail(log_tail)
        if returncode < 0:
            return cls(signal=-returncode, log_tail=tail)
        return cls(code=returncode, log_tail=tail)

    @classmethod
    def from_container(
        cls, exit_code: int, signal_number: int | None = None, message: str = ""
    ) -> BackendExit:
        """From a container's terminated state (exit code 128+N: killed by signal N)."""
        tail = _tail(message.splitlines())
        if signal_number:
            return cls(signal=signal_number, log_tail=tail)
        if _SIGNAL_EXIT_BASE < exit_code < _SIGNAL_EXIT_BASE + 65:
            return cls(signal=exit_code - _SIGNAL_EXIT_BASE, log_tail=tail)
        return cls(code=exit_code, log_tail=tail)

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"

    @property
    def how(self) -> str:
        """'was killed by SIGSEGV (signal 11)' or 'exited with code 1'."""
        if self.signal is not None:
            return f"was killed by {self.signal_name} (signal {self.signal})"
        return f"exited with code {self.code}"

    @property
    def hint(self) -> str | None:
        """What to do, for a known cause."""
        if self.signal is None:
            return None
        try:
            return _HINTS.get(signal.Signals(self.signal))
        except ValueError:
            return None

    def describe(self, subject: str = "the backend", when: str = "", output: bool = True) -> str:
        """One message: how it ended (`when`: e.g. " before it was ready"), what to do, and (`output`) its
        last lines. API clients get it without the output: file paths and logs are the operator's."""
        parts = [f"{subject} {self.how}{when}."]
        if self.hint:
            parts.append(self.hint)
        if output and self.log_tail:
            parts.append(_OUTPUT_LABEL + " | ".join(self.log_tail))
        return " ".join(parts)


def without_output(description: str) -> str:
    """A `describe()` message without its "Last output: ..." part (for API clients)."""
    return description.partition(f" {_OUTPUT_LABEL}")[0]


def _tail(lines: Iterable[str]) -> tuple[str, ...]:
    kept = [line.rstrip() for line in lines if line.strip()]
    return tuple(kept[-TAIL_LINES:])
