"""schema_check, the JSON Schema subset validator: crafted cases, and agreement with jsonschema-rs on random data."""
from __future__ import annotations

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.orchestrator import schema_check
from services.orchestrator.schema import request_schemas
from services.orchestrator.schema_check import (SchemaViolation, assert_supported, check, describe, is_type,
                                                json_equal, json_type)

LIMIT = 4096
SCHEMAS = request_schemas(LIMIT)


def violation(schema: dict, value) -> SchemaViolation | None:
    """The SchemaViolation `check` raises, or None when the value passes."""
    try:
        check(schema, value)
    except SchemaViolation as exc:
        return exc
    return None


@pytest.mark.parametrize("value,kind", [
    (None, "null"), (True, "boolean"), (False, "boolean"), (0, "integer"), (2.0, "integer"), (2.5, "number"),
    ("", "string"), ([], "array"), ({}, "object"), ({1}, "unknown"), (b"x", "unknown")])
def test_json_type(value, kind):
    assert json_type(value) == kind


def test_is_type_and_equality_follow_json_not_python():
    assert is_type(3, "number") and is_type(3.0, "integer") and not is_type(True, "integer")
    assert not is_type(3.5, "integer") and not is_type(None, "object")
    assert json_equal(1, 1.0) and not json_equal(True, 1) and not json_equal(0, False) and json_equal(None, None)
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]}) and not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal([1], [1, 1]) and not json_equal("1", 1)


@pytest.mark.parametrize("schema,value,param,code", [
    ({"type": "integer", "minimum": 1}, 0, None, "invalid_value"),
    ({"type": "integer"}, "3", None, "invalid_type"),
    ({"type": "integer"}, True, None, "invalid_type"),
    ({"type": ["integer", "null"], "enum": [1, None]}, 2, None, "invalid_value"),
    ({"type": ["integer", "null"], "enum": [1, None]}, True, None, "invalid_type"),
    ({"type": "number", "exclusiveMinimum": 0}, 0, None, "invalid_value"),
    ({"type": "number", "exclusiveMaximum": 1}, 1, None, "invalid_value"),
    ({"type": "string", "minLength": 1}, "", None, "invalid_value"),
    ({"type": "string", "maxLength": 1}, "ab", None, "invalid_value"),
    ({"type": "array", "items": {"type": "string"}}, ["a", 1], "[1]", "invalid_type"),
    ({"type": "object", "required": ["a"]}, {}, "a", "missing_required_parameter"),
    ({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "null"}}}}},
     {"a": {"b": 0}}, "a.b", "invalid_type"),
    ({"type": "object", "additionalProperties": False, "properties": {"a": {}}}, {"a": 1, "z": 2}, "z",
     "unknown_parameter"),
    ({"anyOf": [{"type": "string"}, {"type": "array", "maxItems": 1}]}, [1, 2], None, "invalid_value"),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, 5, None, "invalid_type"),
    ({"const": "x"}, "y", None, "invalid_value"),
])
def test_check_rejects_naming_the_part(schema, value, param, code):
    exc = violation(schema, value)
    assert exc is not None, f"{value!r} passed {schema}"
    assert (exc.param, exc.code) == (param, code) and exc.message


@pytest.mark.parametrize("schema,value", [
    ({"type": "integer", "minimum": 1}, 1.0), ({"type": ["string", "null"]}, None), ({}, {"any": [1]}),
    ({"type": "object", "required": ["a"], "properties": {"b": {"type": "string"}}}, {"a": None, "c": 1}),
    ({"type": ["string", "array"], "items": {"type": "string"}, "maxItems": 1}, "a long string, not an array"),
    ({"anyOf": [{"type": "string"}, {"type": "array"}]}, []), ({"const": 1}, 1.0),
])
def test_check_accepts(schema, value):
    assert violation(schema, value) is None


def test_messages_name_the_field_in_openai_words():
    chat = SCHEMAS["ChatRequest"]
    exc = violation(chat, {"model": "m", "messages": [{"role": "wizard", "content": "x"}]})
    assert exc.param == "messages[0].role" and "one of" in exc.message and "'user'" in exc.message
    exc = violation(SCHEMAS["CompletionRequest"], {"model": "m", "prompt": "x", "max_tokens": 0})
    assert exc.message == "'max_tokens' must be an integer between 1 and 4096 or null, got 0"
    assert violation(SCHEMAS["CompletionRequest"], {"prompt": "x"}).message == "you must provide a model parameter"
    assert "non-empty string" in violation(SCHEMAS["CompletionRequest"], {"model": "", "prompt": "x"}).message
    assert describe({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}) == \
        "an array of exactly 1 strings"


@pytest.mark.parametrize("schema,where", [
    ({"type": "string", "pattern": "^a"}, "#: keyword 'pattern'"),
    ({"type": "string", "format": "uri"}, "#: keyword 'format'"),
    ({"type": "object", "properties": {"a": {"oneOf": []}}}, "#/properties/a: keyword 'oneOf'"),
    ({"type": "array", "items": {"uniqueItems": True}}, "#/items: keyword 'uniqueItems'"),
    ({"anyOf": [{"type": "decimal"}]}, "#/anyOf/0/type: unknown type"),
    ({"type": "object", "additionalProperties": {"type": "string"}}, "#/additionalProperties: only `false`"),
    ({"$ref": "#/components/schemas/X"}, "#: keyword '$ref'"),
])
def test_assert_supported_refuses_what_check_would_skip(schema, where):
    with pytest.raises(ValueError, match=where.replace("$", r"\$").replace("(", r"\(")):
        assert_supported(schema)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_request_schemas_use_only_enforced_keywords(name):
    assert_supported(SCHEMAS[name])


# ---- agreement with a full JSON Schema implementation on random data ------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 64, 2 ** 64) | st.floats(allow_nan=False,
                    allow_infinity=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                max_size=3), max_leaves=8)
EDGES = st.sampled_from([0, 1, -1, 2.0, 2.5, 16, 4096, 4097, True, False, None, "", "x", [], {}, [""], ["a", "b"],
                         2 ** 63 - 1, 2 ** 63, -(2 ** 63 - 1), -(2 ** 63), 1e300, 2 ** 24, 2 ** 24 + 1,
                         {"include_usage": True}, {"include_usage": 1}, [{"type": "text", "text": "t"}],
                         [{"type": "image", "text": "t"}], [{"text": "t"}]])
GOOD = {"CompletionRequest": {"model": "tinyllama", "prompt": "hi"},
        "ChatRequest": {"model": "tinyllama", "messages": [{"role": "user", "content": "hi"}]},
        "ProvisionRequest": {"model": "m", "size_bytes": 10}}
MESSAGE_KEYS = ["role", "content", "name", "tool_call_id", "refusal", "extra"]


@st.composite
def mutated(draw, name: str):
    """A valid body of request `name` with a few properties (top level or in a message) replaced or dropped."""
    body = {k: (list(v) if isinstance(v, list) else v) for k, v in GOOD[name].items()}
    keys = list(SCHEMAS[name]["properties"]) + ["unknown_field"]
    for _ in range(draw(st.integers(1, 3))):
        value = draw(EDGES | JSON)
        if name == "ChatRequest" and draw(st.booleans()):
            message = dict(draw(st.sampled_from([{"role": "user", "content": "hi"}, {"role": "assistant"}])))
            key = draw(st.sampled_from(MESSAGE_KEYS))
            message[key] = draw(st.sampled_from(["system", "tool", "wizard"])) if key == "role" else value
            body["messages"] = [message] if draw(st.booleans()) else [{"role": "user", "content": "a"}, message]
            continue
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 4)) == 0:
            body.pop(key, None)
        else:
            body[key] = value
    return body


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(data=st.data())
def test_check_agrees_with_jsonschema_rs(name, data):
    schema = SCHEMAS[name]
    body = data.draw(mutated(name) | JSON)
    reference = jsonschema_rs.Draft202012Validator(schema).is_valid(body)
    exc = violation(schema, body)
    assert (exc is None) == reference, f"schema_check says {exc and exc.message!r}, jsonschema-rs valid={reference}"
    if exc is not None and exc.param is not None:  # every rejection names a field of the schema
        assert exc.param.split(".")[0].split("[")[0] in schema["properties"], exc.param


def test_agreement_check_can_fail(monkeypatch):
    """The differential test above notices a validator that skips a rule (here: every numeric bound)."""
    monkeypatch.setattr(schema_check, "_check_number", lambda schema, value, param: None)
    schema = SCHEMAS["CompletionRequest"]
    bad = {**GOOD["CompletionRequest"], "max_tokens": -5}          # below the declared minimum
    assert not jsonschema_rs.validator_for(schema).is_valid(bad)
    check(schema, bad)   # the crippled validator lets it through: the disagreement the differential test reports
