from __future__ import annotations

from localmodel.crashes import TAIL_LINES, BackendExit


def test_a_segfault_says_signal_known_cause_and_last_output() -> None:
    ended = BackendExit.from_returncode(-11, ["loading", "", "Fatal Python error: Segmentation fault", ""])
    assert ended.signal == 11 and ended.signal_name == "SIGSEGV"
    message = ended.describe("process 42", " before it was ready")
    assert message.startswith("process 42 was killed by SIGSEGV (signal 11) before it was ready.")
    assert "--repack off" in message and "issue 20824" in message
    assert message.endswith("Last output: loading | Fatal Python error: Segmentation fault")
    assert "Last output" not in ended.describe(output=False)


def test_container_exit_codes_above_128_are_signals() -> None:
    assert BackendExit.from_container(139).signal_name == "SIGSEGV"
    assert BackendExit.from_container(132).signal_name == "SIGILL"
    killed = BackendExit.from_container(137, message="line one\nline two\n")
    assert killed.signal_name == "SIGKILL" and "out-of-memory" in (killed.hint or "")
    assert killed.log_tail == ("line one", "line two")
    assert BackendExit.from_container(0, signal_number=6).signal_name == "SIGABRT"


def test_a_plain_exit_code_has_no_hint() -> None:
    ended = BackendExit.from_container(1, message="could not load the model")
    assert ended.code == 1 and ended.signal is None and ended.hint is None
    assert ended.describe() == "the backend exited with code 1. Last output: could not load the model"
    assert BackendExit.from_returncode(2).describe() == "the backend exited with code 2."


def test_only_the_last_lines_are_kept() -> None:
    ended = BackendExit.from_returncode(-6, [f"line {i}" for i in range(100)])
    assert ended.log_tail == tuple(f"line {i}" for i in range(100 - TAIL_LINES, 100))
    assert ended.hint is not None and "GGML_ASSERT" in ended.hint
