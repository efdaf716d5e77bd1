"""A manifest routes the same in local mode as in a cluster: every example, through both paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from localmodel.local.runtime import LocalServedModel, local_routes
from localmodel.manifests import load_manifests
from localmodel.spec import LocalModel
from localmodel_router.discovery.cluster_state import ClusterState
from localmodel_router.discovery.routes import route_for

EXAMPLES = sorted((Path(__file__).parents[3] / "examples").glob("*.yaml"))
CREATED = "2026-01-02T03:04:05Z"


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_an_example_routes_alike_in_local_mode_and_in_a_cluster(path: Path) -> None:
    local = {
        route.name: route
        for route in local_routes([LocalServedModel(m.model, None) for m in load_manifests([path])], 1)
    }
    state = ClusterState()
    for document in yaml.safe_load_all(path.read_text()):
        # As the API server returns it: in a namespace, with a creation time.
        document["metadata"] |= {"namespace": "ai", "creationTimestamp": CREATED}
        state.put_model(document)
    cluster = state.table().routes
    assert set(local) == set(cluster)
    for name, route in cluster.items():
        # What only a cluster has: the namespace (owner, the resource scaled from zero) and its clock.
        expected = dataclasses.replace(route, created=1, owned_by="localmodel", resource=None)
        assert local[name] == expected
        assert route.owned_by == "ai" and route.resource is not None and route.resource.startswith("ai/")


def test_prefix_hash_balancing_is_kept_in_local_mode() -> None:
    (manifest,) = load_manifests([Path(__file__).parents[3] / "examples" / "gpu-pool.yaml"])
    (route,) = local_routes([LocalServedModel(manifest.model, None)], created=1)
    assert route.load_balancing.strategy == "PrefixHash"


@pytest.mark.parametrize(
    ("backend", "shares"),
    [
        ({}, True),  # localmodel's llama.cpp backend: n answers from one prefill
        ({"address": "llm.example:50051"}, False),  # someone else's backend: a call per answer
        ({"image": "example.com/my-llama:1"}, False),  # an image of one's own: it may not know `n`
    ],
)
def test_only_our_llama_cpp_backend_is_asked_for_n_answers_at_once(backend: dict, shares: bool) -> None:
    document = yaml.safe_load((Path(__file__).parents[3] / "examples" / "smollm2-local.yaml").read_text())
    document["spec"]["backend"] |= backend
    assert route_for(LocalModel.model_validate(document)).shares_prefill is shares
