"""OpenAI-compatible request validation and response / SSE chunk shapes for completions and chat."""
from __future__ import annotations

from services.protocol import dumps, loads
from .http_util import HTTPError

CHAT_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


class Params:
    """A validated generation request."""

    __slots__ = ("kind", "model", "prompt", "max_tokens", "seed", "stream", "include_usage")

    def __init__(self, kind, model, prompt, max_tokens, seed, stream, include_usage):
        self.kind, self.model, self.prompt, self.max_tokens = kind, model, prompt, max_tokens
        self.seed, self.stream, self.include_usage = seed, stream, include_usage


def _bad(param: str | None, message: str, code: str | None = "invalid_value") -> HTTPError:
    return HTTPError(400, message, "invalid_request_error", param, code)


def _int(body: dict, name: str, default: int, low: int | None = None, high: int | None = None) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, f"'{name}' must be an integer, got {type(value).__name__}", "invalid_type")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _bad(name, f"'{name}' must be between {low} and {high}, got {value}")
    return value


def _optional(body: dict, name: str, kinds: tuple, what: str) -> None:
    value = body.get(name)
    if value is not None and (not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds):
        raise _bad(name, f"'{name}' must be {what}", "invalid_type")


def parse_json(raw: bytes) -> dict:
    try:
        body = loads(raw)
    except Exception:
        raise _bad(None, "We could not parse the JSON body of your request: invalid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad(None, "the request body must be a JSON object", "invalid_json")
    return body


def _common(body: dict, kind: str, prompt: str, limit: int) -> Params:
    model = body.get("model")
    if model is None:
        raise _bad("model", "you must provide a model parameter", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise _bad("model", "'model' must be a non-empty string", "invalid_type")
    name = "max_completion_tokens" if kind == "chat" and body.get("max_tokens") is None \
        and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _int(body, name, 16, 1, limit)
    seed = _int(body, "seed", 0)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "'stream' must be a boolean", "invalid_type")
    n = _int(body, "n", 1)
    if n != 1:
        raise _bad("n", "only n=1 is supported")
    _optional(body, "temperature", (int, float), "a number")
    _optional(body, "top_p", (int, float), "a number")
    _optional(body, "user", (str,), "a string")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise _bad("stop", "'stop' must be a string or a list of strings", "invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("stream_options", "'stream_options' must be an object", "invalid_type")
    include_usage = bool(options and options.get("include_usage") is True)
    return Params(kind, model, prompt, max_tokens, seed, bool(stream), include_usage)


def parse_completion(raw: bytes, limit: int) -> Params:
    """Validate a /v1/completions body; errors name the offending field."""
    body = parse_json(raw)
    prompt = body.get("prompt")
    if prompt is None:
        raise _bad("prompt", "you must provide a prompt parameter", "missing_required_parameter")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise _bad("prompt", "'prompt' must be a string or a list of exactly one string")
        prompt = prompt[0]
    elif not isinstance(prompt, str):
        raise _bad("prompt", "'prompt' must be a string", "invalid_type")
    return _common(body, "completion", prompt, limit)


def parse_chat(raw: bytes, limit: int) -> Params:
    """Validate a /v1/chat/completions body; the prompt is the messages' contents joined by newlines."""
    body = parse_json(raw)
    messages = body.get("messages")
    if messages is None:
        raise _bad("messages", "you must provide a messages parameter", "missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' must be a non-empty array", "invalid_type")
    contents = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}]", f"messages[{i}] must be an object", "invalid_type")
        role = message.get("role")
        if not isinstance(role, str) or role not in CHAT_ROLES:
            raise _bad(f"messages[{i}].role", f"messages[{i}].role must be one of {sorted(CHAT_ROLES)}")
        content = message.get("content")
        if content is None and role == "assistant":
            content = ""
        if isinstance(content, list):
            texts = [part.get("text") for part in content if isinstance(part, dict)]
            if len(texts) != len(content) or not all(isinstance(t, str) for t in texts):
                raise _bad(f"messages[{i}].content", f"messages[{i}].content parts must be text parts")
            content = "".join(texts)
        if not isinstance(content, str):
            raise _bad(f"messages[{i}].content", f"messages[{i}].content must be a string", "invalid_type")
        contents.append(content)
    return _common(body, "chat", "\n".join(contents), limit)


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
