"""The orchestrator's one route table: path, method, handler, auth, OpenAPI metadata and metric label.

app.py builds its dispatch (and the 405 `Allow` lists) from it, openapi.py renders its paths, and each
route's Endpoint counts its requests under the route's `label` in apiary_http_requests_total (anything
the table does not serve is counted as OTHER). Adding a route here adds it to all three.
"""
from __future__ import annotations

import dataclasses
from typing import Awaitable, Callable

from . import handlers as h
from .generate import chat, completions
from .schema import ERRORS, GENERATION_HEADERS

OTHER = "other"  # the metric label of a request no route serves (404 or 405)


@dataclasses.dataclass(frozen=True)
class Route:
    """One operation: path, method, handler, auth, OpenAPI metadata (`name` is the operationId), metric label."""

    path: str
    method: str
    name: str
    handler: Callable[..., Awaitable[None]]  # async handler(app, ctx)
    summary: str
    ok: tuple[str, str | None]  # (status, response schema name)
    errors: tuple[str, ...] = ()
    auth: bool = True
    admin: bool = False
    body: str | None = None
    headers: tuple[str, ...] = ()
    stream: bool = False
    fast: bool = False  # a POST served before Starlette's router (the generation hot path)
    content_type: str = "application/json"
    also: tuple[tuple[str, str, str], ...] = ()  # (status, description, schema name) not shaped as Error
    metric: str = ""  # the `route` label; "" is the path template

    @property
    def label(self) -> str:
        """The `route` label of this route's requests in apiary_http_requests_total."""
        return self.metric or self.path

    def responses(self) -> dict[str, tuple[str, str | None]]:
        """status -> (description, schema name); every auth route may answer 401, admin routes 403."""
        extra = ("401",) if self.auth else ()
        extra += ("403",) if self.admin else ()
        out = {self.ok[0]: (self.summary, self.ok[1])}
        for status in sorted(set(self.errors + extra)):
            out[status] = (ERRORS[status], "Error")
        for status, description, schema in self.also:
            out[status] = (description, schema)
        return out


def check(routes: tuple[Route, ...]) -> tuple[Route, ...]:
    """Return `routes`; ValueError names a repeated (method, path) or operationId, label OTHER, a fast non-POST."""
    seen: dict[tuple, Route] = {}
    for route in routes:
        if route.label == OTHER:
            raise ValueError(f"route {route.method} {route.path}: the metric label {OTHER!r} is reserved")
        if route.fast and route.method != "POST":
            raise ValueError(f"route {route.method} {route.path}: only a POST route can be fast")
        for key in ((route.method, route.path), ("operationId", route.name)):
            if key in seen:
                raise ValueError(f"route {route.method} {route.path} repeats {key[0]} {key[1]!r} of "
                                 f"{seen[key].method} {seen[key].path}")
            seen[key] = route
    return routes


_GEN_ERRORS = ("400", "404", "409", "413", "429", "502", "503", "504")
ROUTES = check((
    Route("/v1/completions", "POST", "completions", completions, "Create a text completion", ("200", "Completion"),
          _GEN_ERRORS, body="CompletionRequest", headers=GENERATION_HEADERS, stream=True, fast=True),
    Route("/v1/chat/completions", "POST", "chat", chat, "Create a chat completion", ("200", "ChatCompletion"),
          _GEN_ERRORS, body="ChatRequest", headers=GENERATION_HEADERS, stream=True, fast=True),
    Route("/v1/models", "GET", "models", h.models, "Models with state, workers, hives and provisioning progress",
          ("200", "ModelList")),
    Route("/v1/models/provision", "POST", "provision", h.provision, "Ask hives to fetch a model",
          ("202", "Provisioning"), ("400", "404", "413", "503"), body="ProvisionRequest"),
    Route("/v1/workers", "GET", "workers", h.workers, "Hives and workers with slots, state and heartbeat age",
          ("200", "Workers")),
    Route("/v1/jobs/{id}", "GET", "job", h.job, "One job of the caller's tenant with its history", ("200", "Job"),
          ("404",)),
    Route("/v1/admin/shutdown", "POST", "shutdown", h.shutdown, "Graceful cascading shutdown (admin tenants)",
          ("202", "Shutdown"), admin=True),
    Route("/v1/admin/reset", "POST", "reset", h.reset, "Fail live jobs with `reset`, forget finished jobs",
          ("200", "Reset"), admin=True),
    Route("/health", "GET", "health", h.health, "Process alive; registry status", ("200", "Health"), auth=False),
    Route("/ready", "GET", "ready", h.ready, "At least one ready worker", ("200", "Ready"), auth=False,
          also=(("503", "Not ready, with a reason", "Ready"),)),
    Route("/metrics", "GET", "metrics", h.metrics, "Prometheus metrics (text exposition)", ("200", None),
          auth=False, content_type="text/plain"),
    Route("/openapi.json", "GET", "openapi", h.openapi, "This document", ("200", "Document"), auth=False),
))

