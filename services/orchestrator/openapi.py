"""The served OpenAPI 3.1 document (/openapi.json), rendered from the route table (routes.py) and the schemas
(schema.py)."""
from __future__ import annotations

from .routes import ROUTES, Route
from .schema import HEADERS, RESPONSE_SCHEMAS, request_schemas


def examples(limit: int) -> dict[str, dict]:
    """One valid request body per request schema (the mock model's default name)."""
    tokens = min(5, limit)
    return {"CompletionRequest": {"model": "tinyllama", "prompt": "hello", "max_tokens": tokens},
            "ChatRequest": {"model": "tinyllama", "messages": [{"role": "user", "content": "hello"}],
                            "max_tokens": tokens},
            "ProvisionRequest": {"model": "llama-mini", "size_bytes": 1000}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(route: Route, status: str, description: str, schema: str | None) -> dict:
    """One answer: its media types (SSE too for a 200 of a streaming route) and headers."""
    if schema is None:
        content = {route.content_type: {"schema": {"type": "string"}}}
    else:
        content = {"application/json": {"schema": _ref(schema)}}
    out = {"description": description, "content": content}
    if status == "200" and route.stream:
        content["text/event-stream"] = {"schema": _ref("StreamEvent")}
        out["description"] += " (text/event-stream when stream=true)"
        out["headers"] = {"X-Apiary-Job-Id": {"schema": {"type": "string"}}}
    if status == "401":
        out["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}}
    return out


def operation(route: Route, limit: int) -> dict:
    """The OpenAPI operation object of one route."""
    op: dict = {"operationId": route.name, "summary": route.summary,
                "responses": {status: _response(route, status, description, schema)
                              for status, (description, schema) in route.responses().items()}}
    if not route.auth:
        op["security"] = []
    params = [{"name": name, "in": "header", "required": False, **HEADERS[name]} for name in route.headers]
    if "{id}" in route.path:
        params.append({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}})
    if params:
        op["parameters"] = params
    if route.body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _ref(route.body), "example": examples(limit)[route.body]}}}
    return op


def spec(max_tokens_limit: int, routes: tuple[Route, ...] = ROUTES) -> dict:
    """Return the OpenAPI document of `routes` for an orchestrator whose APIARY_MAX_TOKENS_LIMIT is
    `max_tokens_limit`."""
    paths: dict[str, dict] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route, max_tokens_limit)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Apiary orchestrator", "version": "1.0.0",
                 "description": "OpenAI-compatible completions over a cluster of hives and workers (AMDP/1). "
                                "Errors are OpenAI-shaped: {error: {message, type, param, code}}; `param` names "
                                "the offending field (messages[0].role) or header."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**request_schemas(max_tokens_limit), **RESPONSE_SCHEMAS},
        },
    }
