"""The served OpenAPI and the request validation agree: one source (schema.py), checked from both ends."""
from __future__ import annotations

import json

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from services.orchestrator.http_util import HTTPError
from services.orchestrator.openai_api import header_number, parse_chat, parse_completion, validate
from services.orchestrator.openapi import examples, spec
from services.orchestrator.routes import ROUTES
from services.orchestrator.schema import HEADERS, RESPONSE_SCHEMAS, request_schemas

LIMIT = 64
DOC = spec(LIMIT)
LOADED = schemathesis.openapi.from_dict(DOC)
BODY_ROUTES = [(r.path, r.method, r.body) for r in ROUTES if r.body]
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def as_json(body) -> tuple[bytes, object]:
    """(raw bytes sent, decoded value or NOT_JSON) for a generated body: a value, raw bytes, or no body at all."""
    if isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
    else:
        try:
            raw = json.dumps(body).encode()
        except TypeError:  # schemathesis' "no body" marker: the server reads b""
            raw = b""
    try:
        return raw, json.loads(raw)
    except ValueError:
        return raw, NOT_JSON


NOT_JSON = object()


def rejection(name: str, body) -> HTTPError | None:
    """The 400 `validate` raises for a body of request schema `name`, or None when it is accepted."""
    try:
        validate(body if isinstance(body, bytes) else json.dumps(body).encode(), name, LIMIT)
    except HTTPError as exc:
        return exc
    return None


def test_document_lists_every_route_with_its_schemas():
    for route in ROUTES:
        op = DOC["paths"][route.path][route.method.lower()]
        assert op["operationId"] == route.name and set(op["responses"]) == set(route.responses())
        if route.body:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert DOC["components"]["schemas"][ref.rsplit("/", 1)[1]] == request_schemas(LIMIT)[route.body]
        assert ("security" in op) == (not route.auth)
    assert DOC["components"]["schemas"]["CompletionRequest"]["properties"]["max_tokens"]["maximum"] == LIMIT
    assert {p["name"] for p in DOC["paths"]["/v1/completions"]["post"]["parameters"]} == set(HEADERS)
    props = DOC["components"]["schemas"]["ChatRequest"]["properties"]
    assert {"max_completion_tokens", "stream_options"} <= set(props)  # accepted, so documented
    assert props["messages"]["items"]["properties"]["role"]["enum"]  # the roles the validator accepts
    assert DOC["components"]["schemas"]["CompletionRequest"]["properties"]["model"]["minLength"] == 1


def test_document_loads_and_every_schema_compiles():
    loaded = [result.ok() for result in LOADED.get_all_operations()]  # an Err here raises on .ok()
    assert sorted(f"{op.method.upper()} {op.path}" for op in loaded) == sorted(f"{r.method} {r.path}" for r in ROUTES)
    for name, schema in {**request_schemas(LIMIT), **RESPONSE_SCHEMAS}.items():
        jsonschema_rs.Draft202012Validator(schema)  # raises on an invalid schema
    for name, body in examples(LIMIT).items():
        assert rejection(name, body) is None, name


@pytest.mark.parametrize("path,method,name", BODY_ROUTES)
def test_bodies_generated_from_the_spec_validate(path, method, name):
    """Every positive body schemathesis derives from the served document passes the validator."""
    @FAST
    @given(LOADED[path][method].as_strategy(generation_mode=GenerationMode.POSITIVE))
    def accepted(case):
        exc = rejection(name, case.body)
        assert exc is None, f"{case.body!r:.300} rejected: {exc and exc.error}"
        if name == "CompletionRequest":
            assert isinstance(parse_completion(json.dumps(case.body).encode(), LIMIT).prompt, str)
        if name == "ChatRequest":
            params = parse_chat(json.dumps(case.body).encode(), LIMIT)
            assert isinstance(params.max_tokens, int) and 1 <= params.max_tokens <= LIMIT
    accepted()


@pytest.mark.parametrize("path,method,name", BODY_ROUTES)
def test_negative_bodies_are_rejected_naming_a_declared_field(path, method, name):
    """Bodies schemathesis makes to break the spec: rejected exactly when jsonschema-rs says they break it."""
    schema = request_schemas(LIMIT)[name]
    reference = jsonschema_rs.Draft202012Validator(schema)

    @FAST
    @given(LOADED[path][method].as_strategy(generation_mode=GenerationMode.NEGATIVE))
    def rejected(case):
        raw, value = as_json(case.body)
        exc = rejection(name, raw)
        valid = value is not NOT_JSON and reference.is_valid(value)
        assert (exc is None) == valid, f"{case.body!r:.300}: {exc and exc.error}"
        if exc is not None:
            assert exc.status == 400 and exc.error["type"] == "invalid_request_error" and exc.error["message"]
            param = exc.error["param"]
            assert param is None or param.split(".")[0].split("[")[0] in schema["properties"], param
            assert param is not None or not isinstance(value, dict)
    rejected()


@pytest.mark.parametrize("raw,ok", [
    (b"0.3", 0.3), (b"1", 1.0), (b"1e-3", 0.001), (b"86400", 86400.0), (b"5e-324", 5e-324),
    (b"soon", None), (b"0", None), (b"-1", None), (b"86401", None), (b"1e999", None), (b" 1", None), (b"1.", None),
    (b".5", None), (b"NaN", None), (b"inf", None), (b"0x10", None), (b"", None), (b"1_0", None)])
def test_request_timeout_header_is_a_json_number_in_range(raw, ok):
    if ok is not None:
        assert header_number("X-Request-Timeout", raw) == ok
        return
    with pytest.raises(HTTPError) as caught:
        header_number("X-Request-Timeout", raw)
    assert caught.value.status == 400 and caught.value.error["param"] == "X-Request-Timeout"


@pytest.mark.parametrize("raw,param", [
    (b'{"model": "m", "prompt": "x", "seed": -9223372036854775809}', "seed"),  # orjson: a float, rounded
    (b'{"model": "m", "prompt": "x", "seed": 9223372036854775808}', "seed"),
    (b'{"model": "m", "prompt": "x", "seed": 1e19}', "seed"),
    (b'{"model": "m", "prompt": "x", "max_tokens": 65}', "max_tokens"),
    (b'{"model": "m", "prompt": [3]}', "prompt[0]"),
    (b'{"model": "m", "prompt": "x", "stream_options": {"include_usage": "yes"}}', "stream_options.include_usage"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x", "colour": 1}]}', "messages[0].colour"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "text": "x"}]}]}',
     "messages[0].content[0].type"),
    (b'{"model": "m", "messages": [{"role": "user"}]}', "messages[0].content"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0}',
     "max_completion_tokens"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": true}', "n"),
])
def test_edge_bodies_rejected_with_their_param(raw, param):
    parse = parse_chat if b"messages" in raw else parse_completion
    with pytest.raises(HTTPError) as caught:
        parse(raw, LIMIT)
    assert caught.value.error["param"] == param, caught.value.error


def test_accepted_bodies_are_normalised():
    p = parse_completion(b'{"model": "m", "prompt": ["one"], "max_tokens": 2.0, "seed": -9223372036854775807}',
                         LIMIT)
    assert (p.prompt, p.max_tokens, p.seed) == ("one", 2, -(2 ** 63 - 1)) and type(p.max_tokens) is int
    p = parse_completion(b'{"model": "m", "prompt": "x", "max_completion_tokens": 3, "n": null}', LIMIT)
    assert p.max_tokens == 16  # max_completion_tokens is a chat parameter
    chat = parse_chat(json.dumps({"model": "m", "max_tokens": None, "max_completion_tokens": 3, "stream": True,
                                  "stream_options": {"include_usage": True}, "messages": [
                                      {"role": "system", "content": [{"type": "text", "text": "a"},
                                                                     {"type": "text", "text": "b"}]},
                                      {"role": "assistant", "content": None, "name": "bot"},
                                      {"role": "user", "content": "c"}]}).encode(), LIMIT)
    assert (chat.prompt, chat.max_tokens, chat.stream, chat.include_usage) == ("ab\n\nc", 3, True, True)
    assert parse_completion(b'{"model": "m", "prompt": "x"}', 8).max_tokens == 8  # default capped by the limit
