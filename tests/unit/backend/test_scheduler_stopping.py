"""A scheduler that is closing refuses new work at once instead of queueing it for nobody."""

from __future__ import annotations

import asyncio

import pytest

from localmodel_llamacpp.batching import BatchingScheduler
from localmodel_llamacpp.engine import LlamaEngine, Prompt, StoppingError
from localmodel_llamacpp.options import SamplingConfig


def test_generate_and_run_after_close_fail_with_stopping_error() -> None:
    scheduler = BatchingScheduler(LlamaEngine())
    scheduler.close()

    async def generate() -> None:
        async for _ in scheduler.generate(Prompt(text="hello"), SamplingConfig()):
            pass

    with pytest.raises(StoppingError, match="stopping"):
        asyncio.run(generate())
    with pytest.raises(StoppingError, match="stopping"):
        asyncio.run(scheduler.run(lambda: None))
    assert scheduler.waiting == 0  # nothing was left queued
