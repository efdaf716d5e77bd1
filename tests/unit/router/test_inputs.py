"""The calls of one request's several prompts or inputs: bounded, and all or nothing."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from localmodel_router.errors import BadRequestError
from localmodel_router.serving import Service


def service(max_inputs: int = 8, inputs_at_once: int = 2) -> Service:
    return Service(cast(Any, None), cast(Any, None), max_inputs=max_inputs, inputs_at_once=inputs_at_once)


async def test_results_come_in_input_order_with_at_most_so_many_in_flight() -> None:
    in_flight = peak = 0

    async def call(value: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01 * (5 - value))
        in_flight -= 1
        return value

    results = await service()._each([lambda v=v: call(v) for v in range(5)])
    assert results == [0, 1, 2, 3, 4]
    assert peak == 2


async def test_the_first_failure_cancels_the_others_and_is_raised() -> None:
    cancelled = 0

    async def slow() -> int:
        nonlocal cancelled
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return 0

    async def failing() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("backend said no")

    with pytest.raises(ValueError, match="backend said no"):
        await asyncio.wait_for(service(inputs_at_once=8)._each([slow, failing, slow, slow]), 5)
    assert cancelled == 3


def test_more_inputs_than_allowed_are_refused_naming_the_parameter() -> None:
    service(max_inputs=2)._check_count("input", 2)
    with pytest.raises(BadRequestError) as refused:
        service(max_inputs=2)._check_count("input", 3)
    assert refused.value.param == "input"
