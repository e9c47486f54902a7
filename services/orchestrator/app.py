"""The Starlette application: the route table's raw-ASGI endpoints, lifespan starting the ZeroMQ side, JSON 404/405."""
from __future__ import annotations

import contextlib

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from services.protocol import dumps
from .http_util import Endpoint
from .openapi import spec
from .routes import OTHER, ROUTES, Route, check


class App:
    """The ASGI entry point of one route table: a POST to a `fast` route goes straight to its Endpoint (which
    does auth, errors, metrics itself), skipping Starlette's middleware stack and router; everything else
    (other routes and methods, 404/405, lifespan) is served by the Starlette app. Handlers read `service` and
    the OpenAPI `document` of this table from it."""

    def __init__(self, service, routes: tuple[Route, ...]):
        self.service, self.routes = service, check(routes)
        self.document = dumps(spec(service.settings.max_tokens_limit, self.routes))
        self.endpoints = {(r.method, r.path): Endpoint(self, r) for r in self.routes}
        self.fast = {r.path: self.endpoints[r.method, r.path] for r in self.routes if r.fast}
        self.starlette = _starlette(service, self.endpoints)

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


def _starlette(service, endpoints: dict[tuple[str, str], Endpoint]) -> Starlette:
    """The Starlette app routing every (method, path) to its Endpoint, with JSON 404/405 and the lifespan."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for (method, path), endpoint in endpoints.items():
        by_path.setdefault(path, {})[method] = endpoint
    routes = [StarletteRoute(path, _dispatch(methods), methods=list(methods)) for path, methods in by_path.items()]

    async def not_found(request, exc):
        status = getattr(exc, "status_code", 404)
        service.metrics.http(OTHER, status)
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

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})


def build_app(service, routes: tuple[Route, ...] = ROUTES) -> App:
    """Return the ASGI app serving every route of `routes` (the orchestrator's table unless given)."""
    return App(service, routes)
