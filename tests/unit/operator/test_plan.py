from __future__ import annotations

from localmodel_operator.builders import Unwanted
from localmodel_operator.plan import first_difference, plan

WANTED = {"kind": "Service", "metadata": {"name": "m"}, "spec": {"ports": [{"name": "grpc", "port": 1}]}}


def test_absent_is_created_equal_is_kept_different_is_updated() -> None:
    server_view = {
        **WANTED,
        "spec": {"ports": [{"name": "grpc", "port": 1, "protocol": "TCP"}], "clusterIP": "1.2.3.4"},
    }
    changed = {**WANTED, "spec": {"ports": [{"name": "grpc", "port": 2}]}}
    steps = (
        plan([WANTED], {"Service": None})
        + plan([WANTED], {"Service": server_view})
        + plan([WANTED], {"Service": changed})
    )
    assert [(s.action, s.reason) for s in steps] == [
        ("create", "absent"),
        ("keep", "as wanted"),  # fields the API server added do not count
        ("update", "differs at .spec.ports[0].port"),
    ]
    assert steps[0].name == "Service/m"


def test_lists_must_match_item_by_item() -> None:
    assert first_difference({"a": [1, 2, 3]}, {"a": [1, 2]}) == ".a"
    assert first_difference({"a": [{"x": 1, "y": 2}]}, {"a": [{"x": 1}]}) is None


def test_an_unwanted_child_is_deleted_only_where_this_localmodel_owns_it() -> None:
    ours = {**WANTED, "metadata": {"name": "m", "namespace": "ai", "ownerReferences": [{"uid": "u1"}]}}
    theirs = {**WANTED, "metadata": {"name": "m", "namespace": "ai", "ownerReferences": [{"uid": "u2"}]}}
    unwanted = [Unwanted("Service", "m", "the model is served by its external backend x:1")]
    deleted = plan([], {"Service": ours}, unwanted, owner_uid="u1")
    assert [(s.action, s.name, s.reason) for s in deleted] == [
        ("delete", "Service/m", "not wanted: the model is served by its external backend x:1")
    ]
    assert deleted[0].manifest["metadata"]["namespace"] == "ai"
    assert plan([], {"Service": theirs}, unwanted, owner_uid="u1") == []  # someone else's: left alone
    assert plan([], {"Service": None}, unwanted, owner_uid="u1") == []  # gone already
