"""What the operator's autoscaler reads: requests per model right now, from this router replica."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from localmodel_router.deps import ServicesDep

router = APIRouter()


class ModelLoadReport(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    model: str = Field(description="served name")
    local_model: str | None = Field(description="`namespace/name` of its LocalModel")
    active: int = Field(description="requests held, waiting or running now")
    idle_seconds: float = Field(description="since its last request ended")


class LoadReport(BaseModel):
    models: list[ModelLoadReport]


@router.get("/load", response_model=LoadReport, response_model_by_alias=True)
async def model_load(services: ServicesDep) -> LoadReport:
    """Requests per model; the operator sums the reports of every router replica."""
    load = services.load
    return LoadReport(
        models=[
            ModelLoadReport(
                model=name,
                local_model=route.resource,
                active=load.active(name),
                idle_seconds=round(load.idle_seconds(name), 3),
            )
            for name, route in services.discovery.table().routes.items()
        ]
    )
