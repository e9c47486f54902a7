"""HTTP/SSE client of the orchestrator API that records every operation into a History.

One requests.Session per tenant; SSE streams are parsed incrementally with each token's arrival
time; concurrency helpers run many requests over a bounded thread pool.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from harness.history import History

COMPLETION_PATHS = {False: "/v1/completions", True: "/v1/chat/completions"}


class SSEParser:
    """Incremental Server-Sent Events parser: feed bytes, get complete events {event, data, id}."""

    def __init__(self) -> None:
        self._buf = b""
        self._event: dict[str, Any] = {}
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[dict]:
        """Consume a chunk and return the events it completed (dispatched on a blank line)."""
        self._buf += chunk
        out: list[dict] = []
        while True:
            idx = min((i for i in (self._buf.find(b"\n"), self._buf.find(b"\r")) if i >= 0), default=-1)
            if idx < 0:
                break
            line = self._buf[:idx]
            skip = 2 if self._buf[idx:idx + 2] == b"\r\n" else 1
            if self._buf[idx:idx + 1] == b"\r" and idx + 1 == len(self._buf):
                break  # a lone \r at the end may be the first half of \r\n
            self._buf = self._buf[idx + skip:]
            event = self._line(line.decode("utf-8", "replace"))
            if event is not None:
                out.append(event)
        return out

    def _line(self, line: str) -> dict | None:
        if line == "":
            if not self._data and not self._event:
                return None
            event = {"event": self._event.get("event", "message"), "data": "\n".join(self._data),
                     "id": self._event.get("id")}
            self._event, self._data = {}, []
            return event
        if line.startswith(":"):
            return None
        name, _, val = line.partition(":")
        val = val[1:] if val.startswith(" ") else val
        if name == "data":
            self._data.append(val)
        elif name in ("event", "id", "retry"):
            self._event[name] = val
        return None


def chunk_text(payload: dict) -> str:
    """Return the text of a completion or chat chunk/response (choices[0].text / delta / message)."""
    choices = payload.get("choices") or [{}]
    c0 = choices[0] or {}
    if "text" in c0:
        return c0.get("text") or ""
    for key in ("delta", "message"):
        if isinstance(c0.get(key), dict):
            return c0[key].get("content") or ""
    return ""


@dataclass
class Completion:
    """The observed outcome of one completion request (streamed or not)."""

    tenant: str
    prompt: str
    max_tokens: int
    seed: int
    model: str
    stream: bool = False
    chat: bool = False
    status: int | None = None
    job_id: str | None = None
    text: str = ""
    chunks: list[str] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)   # seconds since the request started
    done: bool = False                                       # [DONE] seen (stream) / body parsed
    error: dict | None = None                                 # error body or SSE `event: error` payload
    finish_reason: str | None = None
    aborted: bool = False                                     # the client hung up on purpose
    exception: str | None = None
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    body: Any = None
    latency: float | None = None
    started_wall: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and self.error is None

    @property
    def ttft(self) -> float | None:
        return self.token_times[0] if self.token_times else None

    def value(self) -> dict:
        """Return the JSON-able summary recorded in the history."""
        headers, body = self.headers, self.body
        self.headers, self.body = CaseInsensitiveDict(), None
        try:
            d = asdict(self)
        finally:
            self.headers, self.body = headers, body
        d.pop("body", None)
        d["headers_received"] = self.status is not None
        d["headers"] = {k: v for k, v in headers.items()
                        if k.lower() in ("x-apiary-job-id", "retry-after", "content-type", "www-authenticate")}
        return d


class ApiClient:
    """Orchestrator API client: one Session per tenant, every request recorded into `history`."""

    def __init__(self, base_url: str, api_keys: dict[str, str], history: History,
                 timeout_s: float = 30.0, model: str = "tinyllama", pool_size: int = 64):
        self.base_url = base_url.rstrip("/")
        self.api_keys = dict(api_keys)
        self.history = history
        self.timeout_s = timeout_s
        self.model = model
        self.pool_size = pool_size
        self._sessions: dict[str, requests.Session] = {}
        self._lock = threading.Lock()
        self._proc = itertools.count()
        self.completions: list[Completion] = []

    # ---- sessions ------------------------------------------------------------------------------
    def session(self, tenant: str | None) -> requests.Session:
        """Return the Session of a tenant (None = no Authorization header, '!bad' = wrong key)."""
        name = tenant or "<anonymous>"
        with self._lock:
            s = self._sessions.get(name)
            if s is None:
                s = requests.Session()
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size)
                s.mount("http://", adapter)
                s.mount("https://", adapter)
                key = self.key_of(tenant)
                if key is not None:
                    s.headers["Authorization"] = f"Bearer {key}"
                self._sessions[name] = s
            return s

    def key_of(self, tenant: str | None) -> str | None:
        """Return the API key used for a tenant name; unknown names use a deliberately wrong key."""
        if tenant is None:
            return None
        return self.api_keys.get(tenant, f"wrong-key-for-{tenant}")

    def _process(self, tenant: str | None) -> str:
        return f"{tenant or 'anonymous'}-{next(self._proc)}"

    # ---- plain requests ------------------------------------------------------------------------
    def request(self, method: str, path: str, tenant: str | None = "admin", f: str | None = None,
                json_body: Any = None, data: bytes | str | None = None, headers: dict | None = None,
                timeout_s: float | None = None, url: str | None = None) -> requests.Response | None:
        """Send one request, record invoke + ok/fail/info, and return the response (None on a transport error)."""
        f = f or f"{method.upper()} {path}"
        op = self.history.invoke(self._process(tenant), f, {"method": method, "path": path}, tenant=tenant)
        try:
            resp = self.session(tenant).request(method, url or self.base_url + path, json=json_body, data=data,
                                                headers=headers, timeout=timeout_s or self.timeout_s)
        except requests.RequestException as exc:
            self.history.complete(op, "info", {"exception": repr(exc)}, tenant=tenant)
            return None
        body = _json_or_text(resp)
        job_id = resp.headers.get("X-Apiary-Job-Id") or (body.get("id") if isinstance(body, dict) else None)
        self.history.complete(op, "ok" if resp.status_code < 400 else "fail",
                              {"status": resp.status_code, "body": body if len(resp.content) < 4096 else "<large>"},
                              job_id=job_id if isinstance(job_id, str) else None, tenant=tenant,
                              status=resp.status_code)
        return resp

    def get(self, path: str, tenant: str | None = "admin", **kw: Any) -> requests.Response | None:
        return self.request("GET", path, tenant=tenant, **kw)

    def post(self, path: str, tenant: str | None = "admin", **kw: Any) -> requests.Response | None:
        return self.request("POST", path, tenant=tenant, **kw)

    def get_job(self, job_id: str, tenant: str = "admin") -> requests.Response | None:
        return self.request("GET", f"/v1/jobs/{job_id}", tenant=tenant, f="get_job")

    def workers(self, tenant: str = "admin") -> dict:
        resp = self.request("GET", "/v1/workers", tenant=tenant, f="list_workers")
        return resp.json() if resp is not None and resp.status_code == 200 else {}

    # ---- completions ---------------------------------------------------------------------------
    def complete(self, prompt: str = "hello", tenant: str | None = "tenant-a", max_tokens: int | None = 16,
                 seed: int | None = 0, model: str | None = None, stream: bool = False, chat: bool = False,
                 extra: dict | None = None, headers: dict | None = None, abort_after_tokens: int | None = None,
                 timeout_s: float | None = None, annotate: dict | None = None) -> Completion:
        """Run one completion (SSE when stream) and record it as f='complete' (`annotate` joins the invoke's
        value, e.g. a client-made nonce and the try number); never raises on HTTP errors."""
        model = model or self.model
        body: dict[str, Any] = {"model": model, "stream": stream}
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if seed is not None:
            body["seed"] = seed
        body.update(extra or {})
        res = Completion(tenant=tenant or "", prompt=prompt, max_tokens=max_tokens if max_tokens is not None else 16,
                         seed=seed if seed is not None else 0, model=model, stream=stream, chat=chat,
                         started_wall=time.time())
        op = self.history.invoke(self._process(tenant), "complete",
                                 {"prompt": prompt, "max_tokens": res.max_tokens, "seed": res.seed,
                                  "model": model, "stream": stream, "chat": chat,
                                  "idempotency_key": (headers or {}).get("Idempotency-Key"), "tenant": tenant,
                                  **(annotate or {})}, tenant=tenant)
        t0 = time.monotonic()
        resp = None
        try:
            resp = self.session(tenant).post(self.base_url + COMPLETION_PATHS[chat], json=body, headers=headers,
                                             stream=stream, timeout=timeout_s or self.timeout_s)
            res.status = resp.status_code
            res.headers = CaseInsensitiveDict(resp.headers)
            res.job_id = resp.headers.get("X-Apiary-Job-Id")
            if stream and resp.status_code == 200:
                self._read_stream(resp, res, t0, abort_after_tokens)
            else:
                res.body = _json_or_text(resp)
                if resp.status_code == 200 and isinstance(res.body, dict):
                    res.text = chunk_text(res.body)
                    res.finish_reason = ((res.body.get("choices") or [{}])[0] or {}).get("finish_reason")
                    res.token_times = [time.monotonic() - t0]
                    res.done = True
                elif isinstance(res.body, dict):
                    res.error = res.body.get("error") if isinstance(res.body.get("error"), dict) else res.body
                else:
                    res.error = {"message": str(res.body)[:500]}
                if isinstance(res.body, dict):
                    res.job_id = res.job_id or res.body.get("id") or (res.error or {}).get("job_id")
        except requests.RequestException as exc:
            res.exception = repr(exc)
        finally:
            if resp is not None:
                resp.close()
        res.latency = time.monotonic() - t0
        if res.ok:
            kind = "ok"
        elif res.aborted or res.exception is not None or (res.status == 200 and not res.done and res.error is None):
            kind = "info"     # indeterminate: we hung up, or the stream ended without [DONE] or an error
        else:
            kind = "fail"
        self.history.complete(op, kind, res.value(), job_id=res.job_id, tenant=tenant, status=res.status)
        with self._lock:
            self.completions.append(res)
        return res

    def _read_stream(self, resp: requests.Response, res: Completion, t0: float, abort_after: int | None) -> None:
        parser = SSEParser()
        for chunk in resp.iter_content(chunk_size=None):
            for ev in parser.feed(chunk):
                now = time.monotonic() - t0
                if ev["event"] == "error":
                    payload = _loads(ev["data"])
                    res.error = payload.get("error", payload) if isinstance(payload, dict) else {"message": ev["data"]}
                    res.job_id = res.job_id or res.error.get("job_id")
                    continue
                if ev["data"].strip() == "[DONE]":
                    res.done = True
                    continue
                payload = _loads(ev["data"])
                if not isinstance(payload, dict):
                    continue
                res.job_id = res.job_id or payload.get("id")
                if payload.get("error"):
                    res.error = payload["error"] if isinstance(payload["error"], dict) else {"message": payload["error"]}
                    continue
                text = chunk_text(payload)
                fr = ((payload.get("choices") or [{}])[0] or {}).get("finish_reason")
                res.finish_reason = fr or res.finish_reason
                if text:
                    res.chunks.append(text)
                    res.token_times.append(now)
                    res.text += text
                if abort_after is not None and len(res.chunks) >= abort_after:
                    res.aborted = True
                    return
            if res.done:
                return

    def openai_complete(self, prompt: str, tenant: str, max_tokens: int = 16, seed: int = 0,
                        stream: bool = False) -> Completion:
        """Run a completion through the official openai SDK (compatibility check), recorded as f='complete'."""
        import openai
        res = Completion(tenant=tenant, prompt=prompt, max_tokens=max_tokens, seed=seed, model=self.model,
                         stream=stream, started_wall=time.time())
        op = self.history.invoke(self._process(tenant), "complete",
                                 {"prompt": prompt, "max_tokens": max_tokens, "seed": seed, "model": self.model,
                                  "stream": stream, "sdk": "openai"}, tenant=tenant)
        t0 = time.monotonic()
        sdk = openai.OpenAI(base_url=self.base_url + "/v1", api_key=self.key_of(tenant) or "none",
                            timeout=self.timeout_s, max_retries=0)
        try:
            if stream:
                for chunk in sdk.completions.create(model=self.model, prompt=prompt, max_tokens=max_tokens,
                                                    seed=seed, stream=True):
                    res.job_id = res.job_id or chunk.id
                    if chunk.choices and chunk.choices[0].text:
                        res.chunks.append(chunk.choices[0].text)
                        res.token_times.append(time.monotonic() - t0)
                        res.text += chunk.choices[0].text
            else:
                out = sdk.completions.create(model=self.model, prompt=prompt, max_tokens=max_tokens, seed=seed)
                res.job_id, res.text = out.id, out.choices[0].text
            res.status, res.done = 200, True
        except openai.APIStatusError as exc:
            res.status, res.error = exc.status_code, {"message": str(exc)}
        except openai.APIError as exc:
            res.exception = repr(exc)
        finally:
            sdk.close()
        res.latency = time.monotonic() - t0
        kind = "ok" if res.ok else ("info" if res.exception else "fail")
        self.history.complete(op, kind, res.value(), job_id=res.job_id, tenant=tenant, status=res.status)
        return res

    # ---- concurrency -------------------------------------------------------------------------
    def run_many(self, specs: Iterable[dict], max_workers: int = 32) -> list[Completion]:
        """Run `complete(**spec)` for every spec over a bounded thread pool; results in spec order."""
        specs = list(specs)
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(specs) or 1)),
                                thread_name_prefix="apiary-client") as pool:
            return list(pool.map(lambda s: self.complete(**s), specs))

    def start_background(self, spec: dict) -> "BackgroundCompletion":
        """Start one completion in a thread (e.g. a stream to crash or abort); join() returns the Completion."""
        return BackgroundCompletion(self, spec)

    def close(self) -> None:
        with self._lock:
            for s in self._sessions.values():
                s.close()
            self._sessions.clear()


class BackgroundCompletion:
    """A completion running in a daemon thread."""

    def __init__(self, client: ApiClient, spec: dict):
        self.result: Completion | None = None
        self._thread = threading.Thread(target=self._run, args=(client, spec), daemon=True,
                                        name="apiary-bg-completion")
        self._thread.start()

    def _run(self, client: ApiClient, spec: dict) -> None:
        self.result = client.complete(**spec)

    def join(self, timeout_s: float) -> Completion:
        self._thread.join(timeout_s)
        if self.result is None:
            raise TimeoutError(f"background completion did not finish within {timeout_s:.1f}s")
        return self.result


def tenant_specs(n: int, tenants: list[str], stream_every: int = 0, max_tokens: int = 8, **kw: Any) -> list[dict]:
    """Build n completion specs round-robin over tenants with distinct prompts (every k-th streamed)."""
    return [dict(prompt=f"req-{i}-{tenants[i % len(tenants)]}", tenant=tenants[i % len(tenants)],
                 max_tokens=max_tokens, seed=i, stream=bool(stream_every) and i % stream_every == 0, **kw)
            for i in range(n)]


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _json_or_text(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:2000]
