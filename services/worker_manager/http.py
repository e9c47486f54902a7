"""HTTP side of the hive (port 9200): /health, /ready, /metrics, /v1/workers, /v1/models, GET/PUT /faults."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.protocol import loads

from .hive import Hive

FAULT_FIELDS = ("corrupt_downloads",)


def validate_hive_faults(raw: object) -> dict:
    """Return a checked hive fault set or raise ValueError('field: message')."""
    if not isinstance(raw, dict):
        raise ValueError("faults: must be a JSON object")
    for field in raw:
        if field not in FAULT_FIELDS:
            raise ValueError(f"{field}: unknown fault field; allowed: {', '.join(FAULT_FIELDS)}")
    corrupt = raw.get("corrupt_downloads", {})
    if not isinstance(corrupt, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in corrupt.items()):
        raise ValueError("corrupt_downloads: must map model names to counts >= 0")
    return {"corrupt_downloads": dict(corrupt)} if corrupt else {}


def make_app(hive: Hive) -> Starlette:
    """Build the Starlette app bound to a running hive."""

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "hive_id": hive.cfg.hive_id})

    async def ready(_: Request) -> JSONResponse:
        reason = hive.ready_reason()
        if reason:
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        return JSONResponse({"ready": True, "workers": len(hive.table.workers)})

    async def metrics(_: Request) -> Response:
        return Response(hive.metrics.render(hive.table.count_states()), media_type=CONTENT_TYPE_LATEST)

    async def workers(_: Request) -> JSONResponse:
        return JSONResponse({"hive_id": hive.cfg.hive_id, "registered": hive.registered,
                             "workers": hive.table.describe()})

    async def models(_: Request) -> JSONResponse:
        prov = hive.provisioner
        return JSONResponse({"cached": prov.cached_models(), "status": prov.status,
                             "downloads_started": prov.downloads_started})

    async def get_faults(_: Request) -> JSONResponse:
        corrupt = {m: n for m, n in hive.provisioner.corrupt.items() if n}
        return JSONResponse({"corrupt_downloads": corrupt} if corrupt else {})

    async def put_faults(request: Request) -> JSONResponse:
        try:
            faults = validate_hive_faults(loads(await request.body() or b"{}"))
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            return JSONResponse({"error": {"field": field if message else "body", "message": str(exc)}},
                                status_code=400)
        hive.provisioner.corrupt = dict(faults.get("corrupt_downloads", {}))
        return JSONResponse(faults)

    return Starlette(routes=[
        Route("/health", health), Route("/ready", ready), Route("/metrics", metrics),
        Route("/v1/workers", workers), Route("/v1/models", models),
        Route("/faults", get_faults, methods=["GET"]), Route("/faults", put_faults, methods=["PUT"]),
    ])
