"""The Starlette application: routes (raw-ASGI endpoints), lifespan starting the ZeroMQ side, JSON 404/405."""
from __future__ import annotations

import contextlib

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from services.protocol import dumps
from .generate import make_handlers
from .http_util import Ctx, Endpoint, HTTPError
from .metrics import CONTENT_TYPE
from .openai_api import parse_json
from .openapi import spec


class App:
    """The ASGI entry point: a POST to one of the generation routes goes straight to its Endpoint (which does
    auth, errors, metrics itself), skipping Starlette's middleware stack and router; everything else (other
    routes and methods, 404/405, lifespan) is served by the Starlette app."""

    def __init__(self, starlette: Starlette, fast: dict[str, Endpoint]):
        self.starlette = starlette
        self.fast = fast

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.fast.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


def build_app(service) -> App:
    """Return the ASGI app serving every route of the orchestrator."""
    scheduler, cluster = service.scheduler, service.cluster
    completions, chat = make_handlers(service)
    openapi_bytes = dumps(spec())

    async def models(ctx: Ctx) -> None:
        await ctx.json(200, {"object": "list", "data": cluster.models.listing()})

    async def workers(ctx: Ctx) -> None:
        hives = []
        for hive in cluster.hives.values():
            age = cluster.liveness.age(hive.id)
            hives.append({"id": hive.id, "state": hive.state, "models": hive.models,
                          "last_heartbeat_age_s": None if age is None else round(age, 3),
                          "workers": sorted(hive.workers)})
        await ctx.json(200, {"hives": hives, "workers": [w.public() for w in cluster.workers.values()]})

    async def job(ctx: Ctx) -> None:
        job_id = ctx.scope["path_params"]["id"]
        found = scheduler.jobs.get(job_id)
        view = found.public() if found is not None and found.tenant == ctx.tenant else None
        if found is None:
            row = service.registry.get_job(job_id)
            if row is not None and row.pop("tenant") == ctx.tenant:
                message = row.pop("error_message")
                row["error"] = None if row["error"] is None else {"code": row["error"], "message": message or row["error"]}
                view = dict(row, object="job")
        if view is None:
            raise HTTPError(404, f"job '{job_id}' not found", param="id", code="job_not_found")
        await ctx.json(200, view)

    async def provision(ctx: Ctx) -> None:
        body = parse_json(await ctx.read_body(service.settings.max_body_bytes))
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HTTPError(400, "'model' must be a non-empty string", param="model",
                            code="missing_required_parameter" if model is None else "invalid_type")
        size = body.get("size_bytes")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise HTTPError(400, "'size_bytes' must be a positive integer", param="size_bytes", code="invalid_value")
        named = body.get("hives")
        live = [h.id for h in cluster.hives.values() if h.state == "ready"]
        if named is not None:
            if not isinstance(named, list) or not all(isinstance(h, str) for h in named):
                raise HTTPError(400, "'hives' must be a list of hive ids", param="hives", code="invalid_type")
            missing = [h for h in named if h not in live]
            if missing:
                raise HTTPError(400, f"hives not live: {', '.join(missing)}", param="hives", code="invalid_value")
            live = named
        if not live:
            raise HTTPError(503, "no live hive to provision the model on", "server_error", None, "no_capacity",
                            {"Retry-After": "1"})
        sent = cluster.models.provision(model, size, live)
        await ctx.json(202, {"model": model, "state": "provisioning", "hives": sent})

    async def health(ctx: Ctx) -> None:
        await ctx.json(200, {"status": "ok", "registry": service.registry.error or "ok"})

    async def ready(ctx: Ctx) -> None:
        if service.stopping:
            await ctx.json(503, {"ready": False, "reason": "shutting down"})
            return
        count = sum(1 for w in cluster.workers.values() if w.state == "ready")
        if count:
            await ctx.json(200, {"ready": True, "workers": count})
        else:
            live = sum(1 for h in cluster.hives.values() if h.state == "ready")
            await ctx.json(503, {"ready": False, "reason": f"no ready worker ({live} live hives)"})

    async def metrics(ctx: Ctx) -> None:
        await ctx.respond(200, service.metrics.render(), content_type=CONTENT_TYPE.encode())

    async def openapi(ctx: Ctx) -> None:
        await ctx.respond(200, openapi_bytes)

    async def shutdown(ctx: Ctx) -> None:
        await ctx.json(202, {"status": "shutting_down", "grace_s": service.settings.shutdown_grace_s})
        service.request_stop("admin", cascade=True)

    async def reset(ctx: Ctx) -> None:
        await ctx.json(200, {"cancelled": scheduler.reset()})

    def route(path, handler, methods, auth=True, admin=False, name=None):
        return Route(path, Endpoint(service, name or path, handler, auth, admin), methods=methods)

    routes = [
        route("/v1/completions", completions, ["POST"]),
        route("/v1/chat/completions", chat, ["POST"]),
        route("/v1/models", models, ["GET"]),
        route("/v1/models/provision", provision, ["POST"]),
        route("/v1/workers", workers, ["GET"]),
        route("/v1/jobs/{id}", job, ["GET"]),
        route("/v1/admin/shutdown", shutdown, ["POST"], admin=True),
        route("/v1/admin/reset", reset, ["POST"], admin=True),
        route("/health", health, ["GET"], auth=False),
        route("/ready", ready, ["GET"], auth=False),
        route("/metrics", metrics, ["GET"], auth=False),
        route("/openapi.json", openapi, ["GET"], auth=False),
    ]

    async def not_found(request, exc):
        status = getattr(exc, "status_code", 404)
        service.metrics.http("other", status)
        message = "no such route" if status == 404 else "method not allowed"
        return Response(dumps({"error": {"message": f"{message}: {request.method} {request.url.path}",
                                         "type": "invalid_request_error", "param": None,
                                         "code": "not_found" if status == 404 else "method_not_allowed"}}),
                        status_code=status, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    starlette = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})
    fast = {r.path: r.endpoint for r in routes[:2]}  # POST /v1/completions, POST /v1/chat/completions
    return App(starlette, fast)
