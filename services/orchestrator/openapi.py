"""The hand-written OpenAPI 3.1 description of the orchestrator's HTTP API (served at /openapi.json)."""
from __future__ import annotations


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "Invalid request (the error names the field in `param`)"),
    "401": _json(_ref("Error"), "Missing or invalid API key (with WWW-Authenticate: Bearer)"),
    "404": _json(_ref("Error"), "Unknown model or job"),
    "409": _json(_ref("Error"), "Idempotency-Key reused with a different body"),
    "413": _json(_ref("Error"), "Body over APIARY_MAX_BODY_BYTES"),
    "429": _json(_ref("Error"), "Admission queue full (Retry-After header)"),
    "502": _json(_ref("Error"), "worker_lost / worker_error"),
    "503": _json(_ref("Error"), "rejected by every worker / shutting down"),
    "504": _json(_ref("Error"), "Deadline exceeded; the message and job_id name the job"),
}
GEN_PARAMS = [
    {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "X-Request-Timeout", "in": "header", "required": False, "schema": {"type": "number"},
     "description": "seconds; default APIARY_REQUEST_TIMEOUT_S"},
    {"name": "traceparent", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "X-Trace-Id", "in": "header", "required": False, "schema": {"type": "string"}},
]
COMMON_GEN = {
    "model": {"type": "string"},
    "max_tokens": {"type": "integer", "minimum": 1, "default": 16},
    "seed": {"type": "integer", "default": 0},
    "stream": {"type": "boolean", "default": False},
    "temperature": {"type": ["number", "null"]}, "top_p": {"type": ["number", "null"]},
    "n": {"type": "integer", "const": 1}, "user": {"type": "string"},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
}


def _gen(summary: str, request: str, response: str) -> dict:
    return {"post": {"summary": summary, "parameters": GEN_PARAMS,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
                     "responses": {"200": {"description": "Completion (or text/event-stream when stream=true)",
                                           "headers": {"X-Apiary-Job-Id": {"schema": {"type": "string"}}},
                                           "content": {"application/json": {"schema": _ref(response)},
                                                       "text/event-stream": {"schema": {"type": "string"}}}},
                                   **ERRORS}}}


def _get(summary: str, schema: dict, auth: bool = True, extra: dict | None = None) -> dict:
    responses = {"200": _json(schema, summary)}
    if auth:
        responses["401"] = ERRORS["401"]
    responses.update(extra or {})
    op = {"summary": summary, "responses": responses}
    if not auth:
        op["security"] = []
    return {"get": op}


def spec() -> dict:
    """Return the OpenAPI document."""
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Apiary orchestrator", "version": "1.0.0",
                 "description": "OpenAI-compatible completions over a cluster of hives and workers (AMDP/1)."},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/completions": _gen("Create a text completion", "CompletionRequest", "Completion"),
            "/v1/chat/completions": _gen("Create a chat completion", "ChatRequest", "ChatCompletion"),
            "/v1/models": _get("Models with state, workers, hives and provisioning progress", obj),
            "/v1/workers": _get("Hives and workers with slots, state and heartbeat age", obj),
            "/v1/jobs/{id}": {"get": {"summary": "One job of the caller's tenant with its history",
                                      "parameters": [{"name": "id", "in": "path", "required": True,
                                                      "schema": {"type": "string"}}],
                                      "responses": {"200": _json(_ref("Job"), "The job"), "401": ERRORS["401"],
                                                    "404": ERRORS["404"]}}},
            "/v1/models/provision": {"post": {
                "summary": "Ask hives to fetch a model",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["model"],
                    "properties": {"model": {"type": "string"}, "size_bytes": {"type": "integer", "minimum": 1},
                                   "hives": {"type": "array", "items": {"type": "string"}}}}}}},
                "responses": {"202": _json(obj, "Provisioning started"), "400": ERRORS["400"],
                              "401": ERRORS["401"], "503": ERRORS["503"]}}},
            "/v1/admin/shutdown": {"post": {"summary": "Graceful cascading shutdown (admin tenants)",
                                            "responses": {"202": _json(obj, "Shutting down"), "401": ERRORS["401"],
                                                          "403": _json(_ref("Error"), "Not an admin tenant")}}},
            "/v1/admin/reset": {"post": {"summary": "Fail live jobs with `reset`, forget finished jobs",
                                         "responses": {"200": _json({"type": "object", "properties": {
                                             "cancelled": {"type": "integer"}}}, "Reset done"),
                                             "401": ERRORS["401"], "403": _json(_ref("Error"), "Not admin")}}},
            "/health": _get("Process alive; registry status", obj, auth=False),
            "/ready": _get("At least one ready worker", obj, auth=False,
                           extra={"503": _json(obj, "Not ready, with a reason")}),
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {
                "description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": _get("This document", obj, auth=False),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["message", "type"],
                    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
                                   "job_id": {"type": "string"}}}}},
                "CompletionRequest": {"type": "object", "required": ["model", "prompt"], "properties": {
                    **COMMON_GEN, "prompt": {"oneOf": [{"type": "string"}, {
                        "type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}]}}},
                "ChatRequest": {"type": "object", "required": ["model", "messages"], "properties": {
                    **COMMON_GEN, "messages": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["role", "content"],
                        "properties": {"role": {"type": "string"}, "content": {"type": "string"}}}}}},
                "Usage": {"type": "object", "properties": {k: {"type": "integer"} for k in (
                    "prompt_tokens", "completion_tokens", "total_tokens")}},
                "Completion": {"type": "object", "properties": {
                    "id": {"type": "string"}, "object": {"const": "text_completion"}, "created": {"type": "integer"},
                    "model": {"type": "string"}, "usage": _ref("Usage"),
                    "choices": {"type": "array", "items": {"type": "object", "properties": {
                        "text": {"type": "string"}, "index": {"type": "integer"},
                        "finish_reason": {"type": "string"}}}}}},
                "ChatCompletion": {"type": "object", "properties": {
                    "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
                    "model": {"type": "string"}, "usage": _ref("Usage"),
                    "choices": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"}, "finish_reason": {"type": "string"},
                        "message": {"type": "object", "properties": {"role": {"type": "string"},
                                                                     "content": {"type": "string"}}}}}}}},
                "Job": {"type": "object", "properties": {
                    "id": {"type": "string"}, "state": {"type": "string"}, "model": {"type": "string"},
                    "attempts": {"type": "integer"}, "worker_id": {"type": ["string", "null"]},
                    "hive_id": {"type": ["string", "null"]}, "created": {"type": "number"},
                    "history": {"type": "array", "items": {"type": "object"}},
                    "error": {"type": ["object", "null"]}}},
            },
        },
    }
