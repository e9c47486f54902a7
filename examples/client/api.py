"""One completion over a keep-alive http.client connection, retried by the policy of `retry`."""
from __future__ import annotations

import dataclasses
import http.client
import json
import random
import secrets
import socket
import threading
import time
from urllib.parse import urlsplit

from examples.client.retry import Policy, wait_for


@dataclasses.dataclass
class Outcome:
    """What one request ended with, after its retries."""

    index: int
    ok: bool = False
    error: str | None = None          # "429 queue_full", "502 worker_lost", "stream worker_lost", "connection ...", ...
    status: int | None = None
    latency_s: float | None = None    # first send to the final answer, retry waits included
    ttft_s: float | None = None       # streamed: first send to the first token
    tries: int = 0
    tokens: int = 0
    waits: list = dataclasses.field(default_factory=list)   # [(reason, seconds)] for every retry


@dataclasses.dataclass
class Answer:
    """One try's answer."""

    status: int | None
    retry_after: str | None = None
    error: str | None = None
    tokens: int = 0
    first_token_at: float | None = None


class Client:
    """Completions against `base_url` with a bearer key; one connection per thread, reused across requests."""

    def __init__(self, base_url: str, key: str, model: str, max_tokens: int, prompt: str, stream: bool,
                 chat: bool, policy: Policy, seed: int | None = None, stop: threading.Event | None = None):
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--base-url must be http(s)://host[:port][/prefix], got {base_url!r}")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.path = parts.path + ("/v1/chat/completions" if chat else "/v1/completions")
        self.key, self.model, self.max_tokens, self.prompt = key, model, max_tokens, prompt
        self.stream, self.chat, self.policy = stream, chat, policy
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.stop = stop or threading.Event()
        self.run_id = secrets.token_hex(6)     # unique per run even with --seed: keys must never be reused
        self._local = threading.local()

    def body(self, index: int) -> bytes:
        """The request body of request `index` (its own seed, so answers differ)."""
        doc = {"model": self.model, "max_tokens": self.max_tokens, "stream": self.stream, "seed": index}
        if self.chat:
            doc["messages"] = [{"role": "user", "content": self.prompt}]
        else:
            doc["prompt"] = self.prompt
        return json.dumps(doc).encode()

    def request(self, index: int) -> Outcome:
        """Send request `index` until it succeeds, fails for good, or its retries are used up."""
        out = Outcome(index)
        body, started = self.body(index), time.perf_counter()
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json",
                   "Idempotency-Key": f"client-{self.run_id}-{index}"}
        while True:
            out.tries += 1
            answer = self._try(body, headers)
            if answer.status == 200 and answer.error is None:
                out.ok, out.status, out.tokens = True, 200, answer.tokens
                out.latency_s = time.perf_counter() - started
                if answer.first_token_at is not None:
                    out.ttft_s = answer.first_token_at - started
                return out
            with self.rng_lock:
                wait = None if answer.error and answer.status == 200 else \
                    wait_for(answer.status, answer.retry_after, out.tries - 1, self.policy, self.rng)
            if wait is None or self.stop.is_set():
                out.status, out.error = answer.status, answer.error
                out.latency_s = time.perf_counter() - started
                return out
            out.waits.append((str(answer.status or "connection"), wait))
            if self.stop.wait(wait):        # interrupted: give up at once
                out.status, out.error = answer.status, answer.error
                return out

    # ---- one try ------------------------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = self._local.conn = cls(self.host, self.port, timeout=self.policy.timeout_s)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _try(self, body: bytes, headers: dict) -> Answer:
        """POST once; a dropped keep-alive connection is reopened once before it counts as a failure."""
        for fresh in (False, True):
            reused = getattr(self._local, "conn", None) is not None
            try:
                conn = self._conn()
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                answer = self._read(resp)
                if resp.will_close:
                    self._drop()
                return answer
            except socket.timeout:
                self._drop()
                return Answer(None, error="timeout")
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if reused and not fresh and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                             ConnectionResetError)):
                    continue            # the server closed an idle keep-alive connection: not the request's fault
                return Answer(None, error=f"connection {type(exc).__name__}")
        return Answer(None, error="connection")

    def _read(self, resp: http.client.HTTPResponse) -> Answer:
        retry_after = resp.getheader("Retry-After")
        if resp.status != 200:
            return Answer(resp.status, retry_after, f"{resp.status} {_error_code(resp.read())}")
        if "text/event-stream" in (resp.getheader("Content-Type") or ""):
            return self._read_sse(resp)
        doc = json.loads(resp.read() or b"{}")
        tokens = (doc.get("usage") or {}).get("completion_tokens", 0)
        return Answer(200, tokens=tokens)

    def _read_sse(self, resp: http.client.HTTPResponse) -> Answer:
        """Read an SSE stream to [DONE]; an `event: error` or a stream that stops early is an error."""
        answer, event = Answer(200), "message"
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
                if data == "[DONE]":
                    resp.read()         # the rest of the chunked body, so the connection can be reused
                    return answer
                doc = json.loads(data)
                if event == "error":
                    answer.error = f"stream {(doc.get('error') or {}).get('code') or 'error'}"
                    resp.read()
                    return answer
                if _chunk_text(doc):
                    answer.tokens += 1
                    if answer.first_token_at is None:
                        answer.first_token_at = time.perf_counter()
            elif not line:
                event = "message"
        answer.error = "stream truncated"
        return answer


def _chunk_text(doc: dict) -> str:
    """The text of a completion or chat chunk ('' for role, finish and usage chunks)."""
    for choice in doc.get("choices") or []:
        text = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
        if text:
            return text
    return ""


def _error_code(raw: bytes) -> str:
    """The OpenAI-style error code of an error body, or 'error'."""
    try:
        err = json.loads(raw).get("error") or {}
    except (ValueError, AttributeError):
        return "error"
    return str(err.get("code") or err.get("type") or "error")
