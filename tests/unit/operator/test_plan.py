from __future__ import annotations

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
