from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from localmodel_router.admission import Admission
from localmodel_router.errors import OverloadedError, RateLimitError


def test_waits_then_refuses_when_the_queue_is_full_and_times_out() -> None:
    async def scenario() -> None:
        admission = Admission(max_in_flight=1, max_waiting=1, timeout=0.2)
        release = asyncio.Event()

        async def hold() -> None:
            async with admission.admit("m"):
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(hold())
        await asyncio.sleep(0)
        assert admission.waiting("m") == 1
        assert REGISTRY.get_sample_value("localmodel_router_waiting_requests", {"model": "m"}) == 1
        with pytest.raises(RateLimitError) as refused:
            async with admission.admit("m"):
                pass
        assert refused.value.status == 429 and refused.value.retry_after == 1
        with pytest.raises(OverloadedError) as timed_out:
            await waiter
        assert timed_out.value.status == 503 and timed_out.value.retry_after == pytest.approx(0.2)
        release.set()
        await holder
        async with admission.admit("m"):  # the place is free again
            assert admission.waiting("m") == 0
            assert REGISTRY.get_sample_value("localmodel_router_waiting_requests", {"model": "m"}) == 0

    asyncio.run(scenario())


def test_models_are_limited_separately() -> None:
    async def scenario() -> None:
        admission = Admission(max_in_flight=1, max_waiting=0, timeout=0.1)
        async with admission.admit("a"), admission.admit("b"):
            with pytest.raises(RateLimitError):
                async with admission.admit("a"):
                    pass

    asyncio.run(scenario())
