"""OpenAI-compatible requests (checked against schema.py) and response / SSE chunk shapes for completions and chat."""
from __future__ import annotations

import functools
import re

from services.protocol import dumps, loads
from .http_util import HTTPError
from .schema import DEFAULT_MAX_TOKENS, HEADERS, request_schemas
from .schema_check import SchemaViolation, compile_schema, describe

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class Params:
    """A validated generation request."""

    __slots__ = ("kind", "model", "prompt", "max_tokens", "seed", "stream", "include_usage")

    def __init__(self, kind, model, prompt, max_tokens, seed, stream, include_usage):
        self.kind, self.model, self.prompt, self.max_tokens = kind, model, prompt, max_tokens
        self.seed, self.stream, self.include_usage = seed, stream, include_usage


def _bad(param: str | None, message: str, code: str | None = "invalid_value") -> HTTPError:
    return HTTPError(400, message, "invalid_request_error", param, code)


def parse_json(raw: bytes) -> dict:
    """Decode a JSON object body (400 invalid_json otherwise)."""
    try:
        body = loads(raw)
    except Exception:
        raise _bad(None, "We could not parse the JSON body of your request: invalid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad(None, "the request body must be a JSON object", "invalid_json")
    return body


@functools.lru_cache(maxsize=16)
def _checker(name: str, limit: int):
    return compile_schema(request_schemas(limit)[name])


@functools.lru_cache(maxsize=16)
def _header_checker(name: str):
    return compile_schema(HEADERS[name]["schema"])


def validate(raw: bytes, name: str, limit: int) -> dict:
    """Decode a body and check it against request schema `name` of schema.py; errors name the field."""
    body = parse_json(raw)
    try:
        _checker(name, limit)(body, None)
    except SchemaViolation as exc:
        raise _bad(exc.param, exc.message, exc.code) from None
    return body


def header_number(name: str, raw: bytes) -> float:
    """Parse a numeric header (a JSON number, nothing else) and check it against its schema in HEADERS."""
    schema = HEADERS[name]["schema"]
    text = raw.decode("latin-1")
    if not _NUMBER.fullmatch(text):
        raise _bad(name, f"'{name}' must be {describe(schema)}, got {text[:40]!r}", "invalid_type")
    value = float(text)
    try:
        _header_checker(name)(value, name)
    except SchemaViolation as exc:
        raise _bad(name, exc.message, exc.code) from None
    return value


def _int(value, default: int) -> int:
    """A schema-checked integer (JSON's 2.0 is 2), or the default for null / absent."""
    return default if value is None else int(value)


def _params(body: dict, kind: str, prompt: str, limit: int) -> Params:
    tokens = body.get("max_tokens")
    if tokens is None and kind == "chat":
        tokens = body.get("max_completion_tokens")
    options = body.get("stream_options") or {}
    return Params(kind, body["model"], prompt, _int(tokens, min(DEFAULT_MAX_TOKENS, limit)),
                  _int(body.get("seed"), 0), bool(body.get("stream")), options.get("include_usage") is True)


def parse_completion(raw: bytes, limit: int) -> Params:
    """Validate a /v1/completions body against CompletionRequest; a one-string list is that string."""
    body = validate(raw, "CompletionRequest", limit)
    prompt = body["prompt"]
    return _params(body, "completion", prompt if isinstance(prompt, str) else prompt[0], limit)


def _text(content) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def parse_chat(raw: bytes, limit: int) -> Params:
    """Validate a /v1/chat/completions body against ChatRequest; the prompt is the contents joined by newlines."""
    body = validate(raw, "ChatRequest", limit)
    return _params(body, "chat", "\n".join(_text(m["content"]) for m in body["messages"]), limit)


# ---- responses ------------------------------------------------------------------------------------
def usage(job) -> dict:
    prompt_tokens = len(job.prompt.split())
    return {"prompt_tokens": prompt_tokens, "completion_tokens": job.completion_tokens,
            "total_tokens": prompt_tokens + job.completion_tokens}


def completion_body(job) -> bytes:
    """The non-streamed answer of a completed job."""
    created = int(job.created)
    if job.kind == "chat":
        return dumps({"id": job.id, "object": "chat.completion", "created": created, "model": job.model,
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": job.text},
                                   "logprobs": None, "finish_reason": job.finish_reason}],
                      "usage": usage(job), "system_fingerprint": None})
    return dumps({"id": job.id, "object": "text_completion", "created": created, "model": job.model,
                  "choices": [{"text": job.text, "index": 0, "logprobs": None, "finish_reason": job.finish_reason}],
                  "usage": usage(job), "system_fingerprint": None})


class ChunkWriter:
    """Pre-encoded SSE chunk templates for one streamed job (one dumps of the token per chunk)."""

    def __init__(self, job):
        self.job = job
        head = dumps({"id": job.id, "object": "chat.completion.chunk" if job.kind == "chat" else "text_completion",
                      "created": int(job.created), "model": job.model})[:-1]
        self.chat = job.kind == "chat"
        if self.chat:
            self._pre = b"data: " + head + b',"choices":[{"index":0,"delta":{"content":'
            self._post = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self._pre = b"data: " + head + b',"choices":[{"text":'
            self._post = b',"index":0,"logprobs":null,"finish_reason":null}]}\n\n'
        self._head = head

    def first(self) -> bytes:
        """Chat streams open with a role delta; completions have no preamble."""
        if not self.chat:
            return b""
        return b"data: " + self._head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},' \
                                        b'"logprobs":null,"finish_reason":null}]}\n\n'

    def token(self, text: str) -> bytes:
        return self._pre + dumps(text) + self._post

    def last(self, include_usage: bool) -> bytes:
        job = self.job
        reason = dumps(job.finish_reason)
        if self.chat:
            end = b"data: " + self._head + b',"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":' + \
                reason + b"}]}\n\n"
        else:
            end = b"data: " + self._head + b',"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":' + \
                reason + b"}]}\n\n"
        if include_usage:
            end += b"data: " + self._head + b',"choices":[],"usage":' + dumps(usage(job)) + b"}\n\n"
        return end + b"data: [DONE]\n\n"


def sse_error(job, code: str, message: str, type_: str = "server_error") -> bytes:
    """The explicit mid-stream failure event (never a silent truncation)."""
    return b"event: error\ndata: " + dumps({"error": {"message": message, "type": type_, "param": None,
                                                      "code": code, "job_id": job.id}}) + b"\n\n"
