"""What the operator's autoscaler reads: requests per model right now, from this router replica."""

from __future__ import annotations

from fastapi import APIRouter

from localmodel.load_report import LoadReport, ModelLoadReport
from localmodel_router.deps import ServicesDep

router = APIRouter()


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
