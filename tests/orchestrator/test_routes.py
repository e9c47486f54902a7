"""One route table (routes.py) feeds the app's dispatch, the request metrics' route labels and the OpenAPI paths:
the running orchestrator agrees with it on all three, and a route added to a table shows up in all three."""
from __future__ import annotations

import asyncio
import json
import re

import pytest
import requests

from services.orchestrator.app import build_app
from services.orchestrator.config import Settings
from services.orchestrator.http_util import Ctx
from services.orchestrator.openapi import spec
from services.orchestrator.routes import OTHER, ROUTES, Route, check
from services.orchestrator.service import Orchestrator

SAMPLE = re.compile(r'^apiary_http_requests_total\{route="([^"]*)",status="(\d+)"\} (\S+)$', re.M)


def request_for(route: Route) -> tuple[str, str, dict]:
    """A harmless request reaching `route`'s handler or auth: (method, url path, requests kwargs)."""
    path = route.path.replace("{id}", "cmpl-none")
    key = "key-a" if route.admin else "key-admin"   # an admin route answers a plain tenant 403: no shutdown
    kwargs: dict = {"headers": {"Authorization": f"Bearer {key}"}}
    if route.body:
        kwargs["data"] = b"{}"  # misses the required fields: a 400 from the route's own validation
    return route.method, path, kwargs


def counts(text: str) -> dict[tuple[str, str], float]:
    return {(route, status): float(value) for route, status, value in SAMPLE.findall(text)}


def test_the_running_orchestrator_agrees_with_the_table(orch):
    table = {(r.method, r.path) for r in ROUTES}
    document = requests.get(orch.url + "/openapi.json", timeout=5).json()
    served = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert served == table
    for route in ROUTES:
        assert document["paths"][route.path][route.method.lower()]["operationId"] == route.name
    before = counts(requests.get(orch.url + "/metrics", timeout=5).text)
    answers = {}
    for route in ROUTES:
        method, path, kwargs = request_for(route)
        r = requests.request(method, orch.url + path, timeout=10, **kwargs)
        body = r.json() if r.headers["content-type"].startswith("application/json") else {}
        code = body["error"]["code"] if "error" in body else None
        assert code not in ("not_found", "method_not_allowed"), (route.method, route.path, r.status_code, code)
        answers[route] = str(r.status_code)
    assert requests.get(orch.url + "/v1/no-such-route", timeout=5).status_code == 404
    assert requests.delete(orch.url + "/v1/models", timeout=5).status_code == 405
    after = counts(requests.get(orch.url + "/metrics", timeout=5).text)
    for route, status in answers.items():
        assert after.get((route.label, status), 0) - before.get((route.label, status), 0) >= 1, (route.path, status)
    assert after[(OTHER, "404")] - before.get((OTHER, "404"), 0) >= 1
    assert after[(OTHER, "405")] - before.get((OTHER, "405"), 0) >= 1
    assert {label for label, _ in after} <= {r.label for r in ROUTES} | {OTHER}


async def echo(app, ctx: Ctx) -> None:
    """A handler for a route the orchestrator does not have."""
    await ctx.json(200, {"status": "ok", "registry": ctx.scope["path"]})


EXTRA = Route("/v1/echo", "GET", "echo", echo, "Answer with the path", ("200", "Health"), auth=False,
              metric="echo")


async def call(app, method: str, path: str) -> tuple[int, bytes]:
    """One HTTP request through the ASGI app in process (no lifespan: nothing binds a socket)."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "root_path": "", "scheme": "http", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_route_added_to_the_table_is_served_counted_and_documented(tmp_path):
    service = Orchestrator(Settings(db_path=str(tmp_path / "registry.db")))
    plain, extended = build_app(service), build_app(service, ROUTES + (EXTRA,))

    async def run():
        return (await call(plain, "GET", "/v1/echo"), await call(extended, "GET", "/v1/echo"),
                await call(extended, "GET", "/openapi.json"), await call(extended, "GET", "/metrics"))
    (plain_status, _), (status, body), (_, document), (_, metrics) = asyncio.run(run())
    assert plain_status == 404  # the orchestrator's own table has no such route
    assert status == 200 and json.loads(body) == {"status": "ok", "registry": "/v1/echo"}
    op = json.loads(document)["paths"]["/v1/echo"]["get"]
    assert op["operationId"] == "echo" and op["security"] == [] and set(op["responses"]) == {"200"}
    assert "/v1/echo" not in spec(service.settings.max_tokens_limit)["paths"]
    seen = counts(metrics.decode())
    assert seen[("echo", "200")] == 1 and seen[(OTHER, "404")] == 1


@pytest.mark.parametrize("extra,problem", [
    (Route("/health", "GET", "health2", echo, "again", ("200", "Health")), "repeats GET '/health'"),
    (Route("/v1/echo", "GET", "models", echo, "again", ("200", "Health")), "repeats operationId 'models'"),
    (Route("/v1/echo", "GET", "echo", echo, "x", ("200", "Health"), metric=OTHER), "label 'other' is reserved"),
    (Route("/v1/echo", "GET", "echo", echo, "x", ("200", "Health"), fast=True), "only a POST route can be fast"),
])
def test_a_table_that_would_disagree_is_refused_naming_the_route(extra, problem):
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        check(ROUTES + (extra,))
    assert extra.path in str(caught.value)
