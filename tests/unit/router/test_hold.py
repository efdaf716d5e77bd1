"""Holding requests for a starting model: bounded in number and time, woken by the routing table."""

from __future__ import annotations

import asyncio

import pytest

from localmodel_router.discovery import ModelRoute
from localmodel_router.discovery.local import LocalDiscovery
from localmodel_router.errors import ModelNotFoundError, OverloadedError
from localmodel_router.hold import Hold


def discovery(route: ModelRoute, woken: list[str]) -> LocalDiscovery:
    return LocalDiscovery([route], wake=woken.append)


async def test_ready_routes_pass_and_unholdable_ones_are_not_held() -> None:
    ready = ModelRoute(name="m", endpoints=("h:1",))
    hold = Hold(discovery(ready, []), max_held=1, timeout=1)
    assert await hold.ready(ready) is ready
    down = ModelRoute(name="m", endpoints=())  # neither starting nor scalable: the dispatcher says 503
    assert await hold.ready(down) is down


async def test_scale_from_zero_asks_once_then_answers_when_an_endpoint_appears() -> None:
    woken: list[str] = []
    route = ModelRoute(name="m", endpoints=(), scales_from_zero=True)
    local = discovery(route, woken)
    hold = Hold(local, max_held=8, timeout=5)

    waiting = asyncio.create_task(hold.ready(route))
    await asyncio.sleep(0.01)
    assert woken == ["m"] and hold.held("m") == 1
    local.set_endpoints("m", [], starting=True)  # a replica is on its way: still held
    await asyncio.sleep(0.01)
    assert not waiting.done()
    local.set_endpoints("m", ["127.0.0.1:9"], starting=False)
    assert (await waiting).endpoints == ("127.0.0.1:9",)
    assert hold.held("m") == 0


async def test_full_hold_and_deadline_answer_503_with_retry_after() -> None:
    route = ModelRoute(name="m", endpoints=(), starting=True)
    hold = Hold(discovery(route, []), max_held=1, timeout=0.2)
    first = asyncio.create_task(hold.ready(route))
    await asyncio.sleep(0.01)
    with pytest.raises(OverloadedError, match="1 requests wait for it already") as full:
        await hold.ready(route)
    assert full.value.status == 503 and full.value.retry_after
    with pytest.raises(OverloadedError, match="no ready backend after 0s") as late:
        await first
    assert late.value.retry_after


async def test_a_model_removed_while_held_is_not_found() -> None:
    route = ModelRoute(name="m", endpoints=(), starting=True)
    local = discovery(route, [])
    waiting = asyncio.create_task(Hold(local, max_held=1, timeout=5).ready(route))
    await asyncio.sleep(0.01)
    local._table.publish(type(local.table())())  # the provider drops every route
    with pytest.raises(ModelNotFoundError):
        await waiting
