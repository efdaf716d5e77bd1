"""Rendering a pydantic body without FastAPI's response re-validation (the models are built by us)."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def json_body(model: BaseModel) -> Response:
    return Response(content=model.model_dump_json(), media_type="application/json")
