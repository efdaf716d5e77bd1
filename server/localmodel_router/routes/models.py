from __future__ import annotations

from fastapi import APIRouter, Response

from localmodel_router.deps import ServicesDep
from localmodel_router.discovery import ModelRoute
from localmodel_router.protocol.models import Model, ModelList
from localmodel_router.routes.responses import json_body

router = APIRouter()


def _model(name: str, route: ModelRoute) -> Model:
    return Model(id=name, created=route.created, owned_by=route.owned_by)


@router.get("/v1/models", response_model=None)
async def list_models(services: ServicesDep) -> Response:
    """Every routable name: served names and their aliases."""
    table = services.discovery.table()
    return json_body(ModelList(data=[_model(name, table.resolve(name)) for name in table.names()]))


@router.get("/v1/models/{model_id:path}", response_model=None)
async def retrieve_model(model_id: str, services: ServicesDep) -> Response:
    return json_body(_model(model_id, services.discovery.table().resolve(model_id)))
