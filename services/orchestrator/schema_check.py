"""A small JSON Schema (2020-12) subset validator: checks request values against the schemas in schema.py.

Only the keywords in KEYWORDS are understood; `assert_supported` refuses a schema that uses any other
validation keyword, so the served OpenAPI document can never promise a rule this validator skips.
Semantics follow the JSON Schema spec: 1.0 is an integer, true is not a number, 1 == 1.0 but true != 1,
absent properties are only checked by `required`, and unknown properties are allowed unless the object says
`additionalProperties: false` (the only form of that keyword supported).

    check(schema, value)        # raises SchemaViolation(param, message, code) naming the first bad field
    run = compile_schema(schema)  # the same, rules resolved once (the request path uses this)
"""
from __future__ import annotations

from typing import Any, Callable

KEYWORDS = frozenset({"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                      "minLength", "maxLength", "minItems", "maxItems", "items", "properties", "required",
                      "anyOf", "additionalProperties"})
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated"})
TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
_ARTICLE = {"null": "null", "boolean": "a boolean", "integer": "an integer", "number": "a number",
            "string": "a string", "array": "an array", "object": "an object"}


class SchemaViolation(Exception):
    """A value broke its schema: `param` names the field (None for the whole body), `code` is OpenAI's."""

    def __init__(self, param: str | None, message: str, code: str):
        super().__init__(message)
        self.param, self.message, self.code = param, message, code


def json_type(value: Any) -> str:
    """Return the JSON type name of a decoded value ("integer" for 2 and 2.0, "unknown" for non-JSON)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    for kind, name in ((str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return "unknown"


def is_type(value: Any, name: str) -> bool:
    """Return True when `value` is of JSON type `name` (an integer is also a number)."""
    actual = json_type(value)
    return actual == name or (name == "number" and actual == "integer")


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans only equal booleans, containers element by element."""
    ta, tb = json_type(a), json_type(b)
    numeric = {"integer", "number"}
    if ta in numeric and tb in numeric:
        return a == b
    if ta != tb:
        return False
    if ta == "array":
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if ta == "object":
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a == b


def types_of(schema: dict) -> list[str]:
    """The schema's `type` as a list (all types when absent)."""
    kind = schema.get("type", list(TYPES))
    return [kind] if isinstance(kind, str) else list(kind)


def join(param: str | None, name: str | int) -> str:
    """Return the path of a member: model, messages[0], messages[0].role."""
    if isinstance(name, int):
        return f"{param or ''}[{name}]"
    return name if not param else f"{param}.{name}"


def _plural(noun: str) -> str:
    return noun[:-1] + "ies" if noun.endswith("y") else noun + "s"


def _bounds(schema: dict, low_key: str, high_key: str) -> str:
    low, high = schema.get(low_key), schema.get(high_key)
    if low is not None and high is not None:
        return f"between {low} and {high}"
    if low is not None:
        return f">= {low}"
    return f"<= {high}" if high is not None else ""


def describe(schema: dict) -> str:
    """A short English description of what a schema accepts (used in error messages)."""
    if "anyOf" in schema:
        return " or ".join(describe(branch) for branch in schema["anyOf"])
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return f"one of {[v for v in schema['enum']]}"
    parts = []
    for kind in types_of(schema):
        text = _ARTICLE[kind]
        if kind in ("integer", "number"):
            rng = _bounds(schema, "minimum", "maximum")
            if "exclusiveMinimum" in schema:
                rng = f"> {schema['exclusiveMinimum']}" + (f" and <= {schema['maximum']}" if "maximum" in schema else "")
            text += f" {rng}" if rng else ""
        elif kind == "string" and schema.get("minLength") == 1 and "maxLength" not in schema:
            text = "a non-empty string"
        elif kind == "array":
            low, high = schema.get("minItems"), schema.get("maxItems")
            noun = _plural(describe(schema["items"]).split(" ", 1)[-1]) if "items" in schema else "items"
            if low is not None and low == high:
                text = f"an array of exactly {low} {noun}"
            elif low == 1 and high is None:
                text = f"a non-empty array of {noun}"
            else:
                count = _bounds(schema, "minItems", "maxItems")
                text = f"an array of {count + ' ' if count else ''}{noun}"
        parts.append(text)
    return " or ".join(parts) if parts else "nothing"


def _bad(param: str | None, schema: dict, value: Any, code: str = "invalid_value") -> SchemaViolation:
    name = f"'{param}'" if param else "the request body"
    got = f", got {json_type(value)}" if code == "invalid_type" else \
        f", got {value!r}" if json_type(value) in ("integer", "number") else ""
    return SchemaViolation(param, f"{name} must be {describe(schema)}{got}", code)


Checker = Callable[[Any, "str | None"], None]
_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_EXACT = {type(None): "null", bool: "boolean", int: "integer", str: "string", list: "array", dict: "object"}


def _kind(value: Any) -> str:
    """json_type, with a fast path for the exact types a JSON decoder returns."""
    kind = _EXACT.get(type(value))
    return kind if kind is not None else json_type(value)


def _check_number(schema: dict, value: Any, param: str | None) -> None:
    if ("minimum" in schema and value < schema["minimum"]) or ("maximum" in schema and value > schema["maximum"]) \
            or ("exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]) \
            or ("exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]):
        raise _bad(param, schema, value)


def _any_of(schema: dict, branches: list[tuple[dict, Checker]]) -> Checker:
    def any_of(value: Any, param: str | None) -> None:
        errors = []
        for branch, run in branches:
            try:
                return run(value, param)
            except SchemaViolation as exc:
                errors.append((branch, exc))
        same_type = [exc for branch, exc in errors if any(is_type(value, t) for t in types_of(branch))]
        if len(same_type) == 1:  # one branch is of the value's type: its own complaint is the precise one
            raise same_type[0]
        raise _bad(param, schema, value, "invalid_value" if same_type else "invalid_type")
    return any_of


def _object(schema: dict) -> Checker:
    required = tuple(schema.get("required", ()))
    known = {name: compile_schema(sub) for name, sub in schema.get("properties", {}).items()}
    closed = schema.get("additionalProperties") is False

    def obj(value: dict, param: str | None) -> None:
        for name in required:
            if name not in value:
                path = join(param, name)
                raise SchemaViolation(path, f"you must provide a {path} parameter", "missing_required_parameter")
        if closed:
            for name in value:
                if name not in known:
                    path = join(param, name)
                    raise SchemaViolation(path, f"'{path}' is not a known field (known: {', '.join(known)})",
                                          "unknown_parameter")
        for name, run in known.items():
            if name in value:
                run(value[name], join(param, name))
    return obj


def _array(schema: dict) -> Checker:
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    items = compile_schema(schema["items"]) if "items" in schema else None

    def array(value: list, param: str | None) -> None:
        if len(value) < low or (high is not None and len(value) > high):
            raise _bad(param, schema, value)
        if items is not None:
            for i, item in enumerate(value):
                items(item, join(param, i))
    return array


def compile_schema(schema: dict) -> Checker:
    """Return `run(value, param)` raising SchemaViolation like `check`, with the schema's rules resolved once."""
    any_of = _any_of(schema, [(b, compile_schema(b)) for b in schema["anyOf"]]) if "anyOf" in schema else None
    kinds = set(types_of(schema))
    allowed = None if kinds >= set(TYPES) else kinds | ({"integer"} if "number" in kinds else set())
    options = [schema["const"]] if "const" in schema else schema.get("enum")
    words = frozenset(options) if options and all(type(o) is str for o in options) else None  # a str-only enum
    numeric = any(key in schema for key in _NUMERIC)
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    by_kind = {"array": _array(schema), "object": _object(schema)}

    def run(value: Any, param: str | None = None) -> None:
        if any_of is not None:
            any_of(value, param)
        kind = _kind(value)
        if allowed is not None and kind not in allowed:
            raise _bad(param, schema, value, "invalid_type")
        if words is not None:
            if type(value) is not str or value not in words:
                raise _bad(param, schema, value)
        elif options is not None and not any(json_equal(value, option) for option in options):
            raise _bad(param, schema, value)
        if kind in ("integer", "number"):
            if numeric:
                _check_number(schema, value, param)
        elif kind == "string":
            if len(value) < low or (high is not None and len(value) > high):
                raise _bad(param, schema, value)
        elif kind in by_kind:
            by_kind[kind](value, param)
    return run


def check(schema: dict, value: Any, param: str | None = None) -> None:
    """Raise SchemaViolation naming the first part of `value` that `schema` rejects; return None when valid."""
    compile_schema(schema)(value, param)


def assert_supported(schema: Any, where: str = "#") -> None:
    """Raise ValueError naming the first keyword (at a JSON pointer) this validator does not enforce."""
    if not isinstance(schema, dict):
        raise ValueError(f"{where}: a schema must be an object, got {json_type(schema)}")
    for key, sub in schema.items():
        if key not in KEYWORDS and key not in ANNOTATIONS:
            raise ValueError(f"{where}: keyword {key!r} is not enforced by schema_check")
        if key == "additionalProperties" and sub is not False:
            raise ValueError(f"{where}/additionalProperties: only `false` is enforced, got {sub!r}")
        if key == "type" and not set(types_of(schema)) <= set(TYPES):
            raise ValueError(f"{where}/type: unknown type {sub!r}")
        if key == "items":
            assert_supported(sub, f"{where}/items")
        elif key == "properties":
            for name, prop in sub.items():
                assert_supported(prop, f"{where}/properties/{name}")
        elif key == "anyOf":
            for i, branch in enumerate(sub):
                assert_supported(branch, f"{where}/anyOf/{i}")
