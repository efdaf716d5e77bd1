from __future__ import annotations

import pytest
from pydantic import ValidationError

from localmodel.load_report import LoadReport, ModelLoadReport


def test_the_router_writes_camel_case_and_the_operator_reads_it_back() -> None:
    report = LoadReport(
        models=[ModelLoadReport(model="chat", local_model="ai/chat", active=2, idle_seconds=0.5)]
    )
    written = report.model_dump(by_alias=True)
    assert written == {
        "models": [{"model": "chat", "localModel": "ai/chat", "active": 2, "idleSeconds": 0.5}]
    }
    assert LoadReport.model_validate_json(report.model_dump_json(by_alias=True)) == report


def test_fields_a_newer_router_adds_are_ignored() -> None:
    entry = '{"model": "m", "localModel": "ai/m", "active": 1, "idleSeconds": 0, "queued": 3}'
    body = f'{{"models": [{entry}], "version": 2}}'
    assert LoadReport.model_validate_json(body).models[0].active == 1


def test_a_model_of_no_local_model_may_leave_it_out() -> None:
    body = '{"models": [{"model": "static", "active": 1, "idleSeconds": 0}]}'
    assert LoadReport.model_validate_json(body).models[0].local_model is None


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        "{}",
        '{"models": {}}',
        '{"models": [{"model": "m", "localModel": "ai/m", "idleSeconds": 0}]}',  # no active
        '{"models": [{"model": "m", "localModel": "ai/m", "active": "many", "idleSeconds": 0}]}',
    ],
)
def test_a_malformed_report_is_refused(body: str) -> None:
    with pytest.raises(ValidationError):
        LoadReport.model_validate_json(body)
