"""HTTP side of the mock worker (port 8001): /health, /ready, /metrics, GET/PUT /faults, GET /ledger."""
from __future__ import annotations

import asyncio
import math

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.protocol import loads

from .faults import FaultError, validate_faults
from .worker import Worker


def make_app(worker: Worker) -> Starlette:
    """Build the Starlette app bound to a running worker."""

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "worker_id": worker.cfg.worker_id})

    async def ready(_: Request) -> JSONResponse:
        reason = worker.ready_reason()
        if reason:
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        return JSONResponse({"ready": True, "state": worker.state, "free_slots": worker.free_slots})

    async def metrics(_: Request) -> Response:
        worker.metrics.in_flight.set(len(worker.jobs))
        return Response(worker.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def get_faults(_: Request) -> JSONResponse:
        return JSONResponse(worker.faults)

    async def put_faults(request: Request) -> JSONResponse:
        try:
            raw = loads(await request.body() or b"{}")
        except ValueError as exc:
            return JSONResponse({"error": {"field": "body", "message": f"invalid JSON: {exc}"}}, status_code=400)
        try:
            faults = validate_faults(raw)
        except FaultError as exc:
            return JSONResponse({"error": {"field": exc.field, "message": str(exc)}}, status_code=400)
        worker.set_faults(faults)
        return JSONResponse(worker.faults)

    async def ledger(request: Request) -> JSONResponse:
        since = None
        raw = request.query_params.get("since")
        if raw is not None:
            try:
                since = float(raw)
                if not math.isfinite(since):
                    raise ValueError
            except ValueError:
                return JSONResponse({"error": {"field": "since", "message": "since must be epoch seconds"}},
                                    status_code=400)
        book = worker.ledger
        try:
            entries, skipped = await asyncio.to_thread(book.read, since)  # the file may be large
        except OSError as exc:
            return JSONResponse({"error": {"field": "ledger", "message": f"ledger unreadable: {exc}"},
                                 "worker": worker.cfg.worker_id, "path": book.path}, status_code=503)
        return JSONResponse({"worker": worker.cfg.worker_id, "path": book.path, "entries": entries,
                             "skipped_lines": skipped, "write_errors": book.errors})

    return Starlette(routes=[
        Route("/health", health), Route("/ready", ready), Route("/metrics", metrics),
        Route("/faults", get_faults, methods=["GET"]), Route("/faults", put_faults, methods=["PUT"]),
        Route("/ledger", ledger, methods=["GET"]),
    ])
