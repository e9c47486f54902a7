"""The orchestrator's HTTP schemas: request and response bodies, headers and error answers.

openai_api.py and handlers.py validate request bodies against `request_schemas(limit)` with schema_check,
generate.py validates the X-Request-Timeout header against HEADERS, and openapi.py renders them (with the
route table of routes.py) as the served document. A rule lives here once; schema_check.assert_supported
refuses a schema keyword the validator skips.
"""
from __future__ import annotations

import functools

CHAT_ROLES = ("system", "user", "assistant", "tool", "developer", "function")
# int64 without its minimum: orjson reads integers outside int64/uint64 as floats, and -(2**63) - 1 rounds to
# -(2**63) -- so an inclusive -(2**63) bound would let an out-of-range literal through.
SEED_MIN, SEED_MAX = -(2 ** 63 - 1), 2 ** 63 - 1
MAX_MODEL_BYTES = 2 ** 24  # 16 MiB: each hive writes (and hashes, off its loop) that many bytes per provision
DEFAULT_MAX_TOKENS = 16
MAX_REQUEST_TIMEOUT_S = 86400

HEADERS = {
    "Idempotency-Key": {"schema": {"type": "string"},
                        "description": "a retry with the same key and body returns the same job; another body is 409"},
    "X-Request-Timeout": {"schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_REQUEST_TIMEOUT_S},
                          "description": "seconds; default APIARY_REQUEST_TIMEOUT_S; past it the answer is 504"},
    "traceparent": {"schema": {"type": "string"}, "description": "W3C trace context; its trace-id is the job's"},
    "X-Trace-Id": {"schema": {"type": "string"}, "description": "trace id when no traceparent (at most 128 chars)"},
}
GENERATION_HEADERS = ("Idempotency-Key", "X-Request-Timeout", "traceparent", "X-Trace-Id")


def _nullable(kind: str, **rules) -> dict:
    return {"type": [kind, "null"], **rules}


# Request bodies are open at the top (OpenAI parameters this mock ignores are accepted), but a message and a
# content part have a small fixed shape: an unknown field there is a 400 naming it, not silently dropped.
TEXT_PART = {"type": "object", "required": ["type", "text"], "additionalProperties": False,
             "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}
MESSAGE = {"type": "object", "required": ["role", "content"], "additionalProperties": False, "properties": {
    "role": {"type": "string", "enum": list(CHAT_ROLES)},
    "content": {"type": ["string", "array", "null"], "items": TEXT_PART,
                "description": "text, or text parts (joined); null is empty"},
    "name": {"type": "string", "description": "accepted and ignored"},
    "tool_call_id": {"type": "string", "description": "accepted and ignored"},
    "refusal": {"type": ["string", "null"], "description": "accepted and ignored"}}}


def _generation_fields(limit: int) -> dict:
    return {
        "model": {"type": "string", "minLength": 1, "description": "a model id listed by /v1/models"},
        "max_tokens": _nullable("integer", minimum=1, maximum=limit, default=min(DEFAULT_MAX_TOKENS, limit)),
        "seed": _nullable("integer", minimum=SEED_MIN, maximum=SEED_MAX, default=0),
        "stream": _nullable("boolean", default=False),
        "stream_options": _nullable("object", properties={"include_usage": {"type": "boolean"}},
                                    description="with stream: include_usage adds a last chunk with usage"),
        "temperature": _nullable("number", description="accepted and ignored (the mock model is deterministic)"),
        "top_p": _nullable("number", description="accepted and ignored"),
        "n": _nullable("integer", enum=[1, None], description="only 1 is supported"),
        "user": {"type": "string"},
        "stop": {"type": ["string", "array", "null"], "items": {"type": "string"}, "description": "accepted and ignored"},
    }


@functools.lru_cache(maxsize=8)
def request_schemas(limit: int) -> dict[str, dict]:
    """Return the JSON request body schemas by component name; `limit` is APIARY_MAX_TOKENS_LIMIT."""
    common = _generation_fields(limit)
    model = common.pop("model")
    return {
        "CompletionRequest": {"type": "object", "required": ["model", "prompt"], "properties": {
            "model": model, "prompt": {"type": ["string", "array"], "items": {"type": "string"}, "minItems": 1,
                                       "maxItems": 1, "description": "a string, or a list of exactly one string"},
            **common}},
        "ChatRequest": {"type": "object", "required": ["model", "messages"], "properties": {
            "model": model, "messages": {"type": "array", "minItems": 1, "items": MESSAGE},
            **common, "max_completion_tokens": _nullable(
                "integer", minimum=1, maximum=limit, description="used when max_tokens is absent or null")}},
        "ProvisionRequest": {"type": "object", "required": ["model"], "properties": {
            "model": {"type": "string", "minLength": 1},
            "size_bytes": _nullable("integer", minimum=1, maximum=MAX_MODEL_BYTES),
            "hives": _nullable("array", items={"type": "string"}, minItems=1,
                               description="live hive ids; absent or null: every live hive")}},
    }


def _obj(required: tuple = (), **props) -> dict:
    return {"type": "object", "required": list(required), "properties": props}


_STR, _INT, _NUM, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_OPT_STR = {"type": ["string", "null"]}
USAGE = _obj(("prompt_tokens", "completion_tokens", "total_tokens"), prompt_tokens=_INT, completion_tokens=_INT,
             total_tokens=_INT)
RESPONSE_SCHEMAS = {
    "Error": _obj(("error",), error=_obj(("message", "type", "param", "code"), message=_STR, type=_STR,
                                         param=_OPT_STR, code=_OPT_STR, job_id=_STR)),
    "Usage": USAGE,
    "Completion": _obj(("id", "object", "created", "model", "choices", "usage"), id=_STR,
                       object={"const": "text_completion"}, created=_INT, model=_STR, usage=USAGE,
                       choices={"type": "array", "items": _obj(("text", "index", "finish_reason"), text=_STR,
                                                               index=_INT, finish_reason=_STR)}),
    "ChatCompletion": _obj(("id", "object", "created", "model", "choices", "usage"), id=_STR,
                           object={"const": "chat.completion"}, created=_INT, model=_STR, usage=USAGE,
                           choices={"type": "array", "items": _obj(
                               ("index", "message", "finish_reason"), index=_INT, finish_reason=_STR,
                               message=_obj(("role", "content"), role={"const": "assistant"}, content=_STR))}),
    "Job": _obj(("id", "state", "model", "attempts", "history", "error"), id=_STR, object={"const": "job"},
                state=_STR, model=_STR, attempts=_INT, worker_id=_OPT_STR, hive_id=_OPT_STR, created=_NUM,
                updated={"type": ["number", "null"]}, history={"type": "array", "items": {"type": "object"}},
                error={"type": ["object", "null"]}),
    "ModelList": _obj(("object", "data"), object={"const": "list"}, data={"type": "array", "items": _obj(
        ("id", "object", "state", "workers", "hives"), id=_STR, object={"const": "model"}, created=_INT,
        owned_by=_STR, state=_STR, workers={"type": "array", "items": _STR}, hives={"type": "array", "items": _STR},
        progress={"type": "object"})}),
    "Workers": _obj(("hives", "workers"), hives={"type": "array", "items": _obj(
        ("id", "state", "workers"), id=_STR, state=_STR, models={"type": "array", "items": _STR},
        last_heartbeat_age_s={"type": ["number", "null"]}, workers={"type": "array", "items": _STR})},
        workers={"type": "array", "items": _obj(("id", "hive", "state"), id=_STR, hive=_STR, model=_OPT_STR,
                                                slots=_INT, free_slots=_INT, running=_INT, state=_STR,
                                                last_heartbeat_age_s={"type": ["number", "null"]})}),
    "Provisioning": _obj(("model", "state", "hives"), model=_STR, state={"const": "provisioning"},
                         hives={"type": "array", "items": _STR}),
    "Health": _obj(("status", "registry"), status={"const": "ok"}, registry=_STR),
    "Ready": _obj(("ready",), ready=_BOOL, workers=_INT, reason=_STR),
    "Shutdown": _obj(("status", "grace_s"), status={"const": "shutting_down"}, grace_s=_NUM),
    "Reset": _obj(("cancelled",), cancelled=_INT),
    "Document": {"type": "object", "description": "an OpenAPI 3.1 document"},
    "StreamEvent": {**_obj(("data",), event={"enum": ["message", "error"]}, data=_STR),
                    "description": "one server-sent event: data is a JSON chunk (object text_completion or "
                                   "chat.completion.chunk), a usage chunk, [DONE], or on `event: error` an Error"},
}
# status -> what an Error answer of it means (routes.py lists each route's)
ERRORS = {"400": "Invalid request (the error names the field in `param`)",
          "401": "Missing or invalid API key (with WWW-Authenticate: Bearer)",
          "403": "Not an admin tenant",
          "404": "Unknown model, job or hive (`param` says which)",
          "409": "Idempotency-Key reused with a different body",
          "413": "Body over APIARY_MAX_BODY_BYTES",
          "429": "Admission queue full (Retry-After header)",
          "502": "worker_lost / worker_error",
          "503": "rejected by every worker / shutting down / no live hive (Retry-After header)",
          "504": "Deadline (X-Request-Timeout) exceeded; the message and job_id name the job"}
