from __future__ import annotations

import json
import logging

from localmodel.logs import JsonFormatter


def test_json_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("localmodel.test", logging.WARNING, __file__, 1, "model %s", ("x",), None)
    record.__dict__.update({"path": "/models/x.gguf", "seconds": 0.5})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["logger"] == "localmodel.test"
    assert entry["message"] == "model x"
    assert (entry["path"], entry["seconds"]) == ("/models/x.gguf", 0.5)
    assert entry["time"].endswith("+00:00")
