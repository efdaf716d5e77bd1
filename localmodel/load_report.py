"""The router's load report (`GET /load` on each router replica), which the operator's autoscaler reads.

One definition for both sides: the router writes it, the operator parses it. Routers and operator are
upgraded separately, so a reader ignores fields it does not know; a field may be added, never removed or
retyped (a report without one the model requires is malformed, and a malformed report counts as no answer).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ModelLoadReport(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    model: str = Field(description="served name")
    local_model: str | None = Field(default=None, description="`namespace/name` of its LocalModel")
    active: int = Field(description="requests held, waiting or running now")
    idle_seconds: float = Field(description="since its last request ended")


class LoadReport(BaseModel):
    model_config = ConfigDict(extra="ignore")

    models: list[ModelLoadReport]
