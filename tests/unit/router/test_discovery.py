from __future__ import annotations

import pytest

from localmodel_router.discovery import ModelRoute, RoutingTable
from localmodel_router.discovery.static import StaticDiscovery
from localmodel_router.errors import ModelNotFoundError
from localmodel_router.settings import StaticModel


def test_names_and_aliases_resolve_names_win() -> None:
    table = RoutingTable(
        {
            "a": ModelRoute(name="a", endpoints=("h:1",), aliases=("gpt", "b")),
            "b": ModelRoute(name="b", endpoints=()),
        }
    )
    assert table.resolve("gpt").name == "a"
    assert table.resolve("b").name == "b"  # a served name is never shadowed by another model's alias
    assert sorted(table.names()) == ["a", "b", "gpt"]
    assert table.has_ready_model()
    assert not RoutingTable({"b": ModelRoute(name="b", endpoints=())}).has_ready_model()


def test_unknown_model_names_the_known_ones() -> None:
    table = RoutingTable({"a": ModelRoute(name="a", endpoints=("h:1",), aliases=("gpt",))})
    with pytest.raises(ModelNotFoundError, match="'nope' does not exist.*a, gpt") as caught:
        table.resolve("nope")
    assert caught.value.status == 404 and caught.value.param == "model"


def test_static_discovery_from_settings() -> None:
    models = [StaticModel.model_validate({"name": "m", "endpoints": ["h:1", "h:2"], "maxTokens": 32})]
    route = StaticDiscovery(models).table().resolve("m")
    assert route.endpoints == ("h:1", "h:2") and route.max_tokens == 32 and route.created > 0
