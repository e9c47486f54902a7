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
from .openai_api import validate
from .openapi import spec
from .schema import ROUTES


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


def _dispatch(endpoints: dict[str, Endpoint]):
    """One ASGI app per path: its only Endpoint, or a switch on the method (HEAD is served as GET)."""
    if len(endpoints) == 1:
        return next(iter(endpoints.values()))

    async def by_method(scope, receive, send) -> None:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        await endpoints[method](scope, receive, send)
    return by_method


def build_app(service) -> App:
    """Return the ASGI app serving every route of the orchestrator."""
    scheduler, cluster = service.scheduler, service.cluster
    completions, chat = make_handlers(service)
    limit = service.settings.max_tokens_limit
    openapi_bytes = dumps(spec(limit))

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
        body = validate(await ctx.read_body(service.settings.max_body_bytes), "ProvisionRequest", limit)
        model = body["model"]
        size = None if body.get("size_bytes") is None else int(body["size_bytes"])
        named = body.get("hives")
        live = [h.id for h in cluster.hives.values() if h.state == "ready"]
        if named is not None:
            missing = [h for h in named if h not in live]
            if missing:
                raise HTTPError(404, f"hives not live: {', '.join(map(repr, missing))}", param="hives",
                                code="hive_not_found")
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

    handlers = {"completions": completions, "chat": chat, "models": models, "provision": provision,
                "workers": workers, "job": job, "shutdown": shutdown, "reset": reset, "health": health,
                "ready": ready, "metrics": metrics, "openapi": openapi}
    by_path: dict[str, dict[str, Endpoint]] = {}
    for r in ROUTES:
        by_path.setdefault(r.path, {})[r.method] = Endpoint(service, r.path, handlers[r.name], r.auth, r.admin)
    routes = [Route(path, _dispatch(endpoints), methods=list(endpoints)) for path, endpoints in by_path.items()]

    async def not_found(request, exc):
        status = getattr(exc, "status_code", 404)
        service.metrics.http("other", status)
        message = "no such route" if status == 404 else "method not allowed"
        headers = getattr(exc, "headers", None) if status == 405 else None  # Starlette's `Allow` (RFC 9110)
        return Response(dumps({"error": {"message": f"{message}: {request.method} {request.url.path}",
                                         "type": "invalid_request_error", "param": None,
                                         "code": "not_found" if status == 404 else "method_not_allowed"}}),
                        status_code=status, media_type="application/json", headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    starlette = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})
    fast = {r.path: by_path[r.path]["POST"] for r in ROUTES if r.name in ("completions", "chat")}
    return App(starlette, fast)
