from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from localmodel_router.deps import ServicesDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(services: ServicesDep, request: Request) -> JSONResponse:
    """At least one model has a backend to route to; `failures` says why models' backends crash. With
    API keys, the model names and failures only for a caller with a key (probes get the status)."""
    table = services.discovery.table()
    ready = table.has_ready_model()
    body: dict[str, object] = {"status": "ready" if ready else "no model is routable"}
    if services.api_keys.accepts(request.headers.get("authorization")):
        body["models"] = sorted(table.routes)
        if failures := table.failures():
            body["failures"] = failures
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_model=None)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
