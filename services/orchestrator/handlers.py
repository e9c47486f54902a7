"""The handlers of the orchestrator's routes other than generation: each is `async handler(app, ctx)`.

`app` is the App serving the request (its `service`, and the OpenAPI `document` rendered from its route
table); routes.py names each handler beside its path, method, auth and OpenAPI metadata.
"""
from __future__ import annotations

from .http_util import Ctx, HTTPError
from .metrics import CONTENT_TYPE
from .openai_api import validate


async def models(app, ctx: Ctx) -> None:
    """GET /v1/models."""
    await ctx.json(200, {"object": "list", "data": app.service.cluster.models.listing()})


async def workers(app, ctx: Ctx) -> None:
    """GET /v1/workers: hives and workers with state and heartbeat age."""
    cluster = app.service.cluster
    hives = []
    for hive in cluster.hives.values():
        age = cluster.liveness.age(hive.id)
        hives.append({"id": hive.id, "state": hive.state, "models": hive.models,
                      "last_heartbeat_age_s": None if age is None else round(age, 3),
                      "workers": sorted(hive.workers)})
    await ctx.json(200, {"hives": hives, "workers": [w.public() for w in cluster.workers.values()]})


async def job(app, ctx: Ctx) -> None:
    """GET /v1/jobs/{id}: a live job, else the registry's row, of the caller's tenant only."""
    service = app.service
    job_id = ctx.scope["path_params"]["id"]
    found = service.scheduler.jobs.get(job_id)
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


async def provision(app, ctx: Ctx) -> None:
    """POST /v1/models/provision: ask the named (or every live) hive to fetch a model."""
    service = app.service
    cluster, limit = service.cluster, service.settings.max_tokens_limit
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


async def health(app, ctx: Ctx) -> None:
    """GET /health: the process is alive; the registry's status."""
    await ctx.json(200, {"status": "ok", "registry": app.service.registry.error or "ok"})


async def ready(app, ctx: Ctx) -> None:
    """GET /ready: 200 with at least one ready worker, else 503 with the reason."""
    service = app.service
    if service.stopping:
        await ctx.json(503, {"ready": False, "reason": "shutting down"})
        return
    count = sum(1 for w in service.cluster.workers.values() if w.state == "ready")
    if count:
        await ctx.json(200, {"ready": True, "workers": count})
    else:
        live = sum(1 for h in service.cluster.hives.values() if h.state == "ready")
        await ctx.json(503, {"ready": False, "reason": f"no ready worker ({live} live hives)"})


async def metrics(app, ctx: Ctx) -> None:
    """GET /metrics: the Prometheus text exposition."""
    await ctx.respond(200, app.service.metrics.render(), content_type=CONTENT_TYPE.encode())


async def openapi(app, ctx: Ctx) -> None:
    """GET /openapi.json: the document of the app's own route table."""
    await ctx.respond(200, app.document)


async def shutdown(app, ctx: Ctx) -> None:
    """POST /v1/admin/shutdown: answer, then start the cascading graceful shutdown."""
    service = app.service
    await ctx.json(202, {"status": "shutting_down", "grace_s": service.settings.shutdown_grace_s})
    service.request_stop("admin", cascade=True)


async def reset(app, ctx: Ctx) -> None:
    """POST /v1/admin/reset: fail live jobs with `reset`, forget finished ones."""
    await ctx.json(200, {"cancelled": app.service.scheduler.reset()})
