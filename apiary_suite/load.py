"""Load for the chaos suites: a bounded background load (threads over the recording ApiClient), a burst of
many concurrent connections (asyncio, one socket each, recorded into the same History), latency
percentiles, and a metrics file that lands in the run's report directory.

Every loop here is bounded in time and count and stops by itself.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

from harness.history import History
from harness.stats import percentile


# ---- pure helpers -----------------------------------------------------------------------------------
def latency_summary(values: Iterable[float]) -> dict:
    """count, min, p50, p90, p99, max and mean of latencies in seconds (None fields when empty)."""
    data = [float(v) for v in values if v is not None]
    return {"count": len(data), "min": min(data) if data else None, "p50": percentile(data, 50),
            "p90": percentile(data, 90), "p99": percentile(data, 99), "max": max(data) if data else None,
            "mean": sum(data) / len(data) if data else None}


def parse_http_response(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """Split a raw HTTP/1.1 response (read to EOF) into status, lower-cased headers, body (de-chunked)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return None, {}, b""
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body


def dechunk(data: bytes) -> bytes:
    """Decode an HTTP/1.1 chunked body (stops at the last chunk or at truncated data)."""
    out, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        try:
            size = int(data[pos:end].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


def write_metrics(report_dir: str | Path | None, name: str, data: dict) -> Path | None:
    """Append one JSON line {name, ...data} to <report_dir>/chaos-metrics.jsonl and print it."""
    line = json.dumps({"name": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}, default=str)
    print(f"[chaos-metrics] {line}", flush=True)
    if not report_dir:
        return None
    path = Path(report_dir) / "chaos-metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(line + "\n")
    return path


# ---- bounded background load ------------------------------------------------------------------------
class BackgroundLoad:
    """`clients` threads each sending completions back to back through the recording ApiClient until
    stop() or `max_s` (a hard bound) or `max_requests` per client."""

    def __init__(self, client: Any, clients: int = 4, max_tokens: int = 4, tenants: tuple[str, ...] = ("tenant-a",),
                 max_s: float = 60.0, max_requests: int = 10_000, stream_every: int = 0, prefix: str = "load"):
        self.client = client
        self.clients = clients
        self.max_tokens = max_tokens
        self.tenants = tenants
        self.max_s = max_s
        self.max_requests = max_requests
        self.stream_every = stream_every
        self.prefix = prefix
        self.results: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = self.stopped = None

    def start(self) -> "BackgroundLoad":
        self.started = time.monotonic()
        for i in range(self.clients):
            t = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"apiary-load-{i}")
            t.start()
            self._threads.append(t)
        return self

    def _run(self, index: int) -> None:
        deadline = self.started + self.max_s
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline and n < self.max_requests:
            tenant = self.tenants[(index + n) % len(self.tenants)]
            stream = bool(self.stream_every) and (n % self.stream_every == 0)
            res = self.client.complete(f"{self.prefix}-{index}-{n}", tenant=tenant, max_tokens=self.max_tokens,
                                       seed=n, stream=stream)
            with self._lock:
                self.results.append(res)
            n += 1

    def stop(self, join_timeout_s: float = 60.0) -> list:
        """Stop sending new requests and wait for the ones in flight; returns every Completion."""
        self._stop.set()
        for t in self._threads:
            t.join(join_timeout_s)
        alive = [t.name for t in self._threads if t.is_alive()]
        self.stopped = time.monotonic()
        if alive:
            raise AssertionError(f"load clients still running after {join_timeout_s:.0f}s: {alive}")
        return list(self.results)

    @property
    def elapsed_s(self) -> float:
        return ((self.stopped or time.monotonic()) - self.started) if self.started else 0.0


# ---- burst of concurrent connections ----------------------------------------------------------------
class Burst:
    """n POST /v1/completions at once, one TCP connection each (asyncio), recorded as f='complete'."""

    def __init__(self, api_url: str, api_key: str, history: History, tenant: str = "tenant-a",
                 timeout_s: float = 60.0, connect_limit: int = 2000):
        u = urlsplit(api_url)
        self.host, self.port = u.hostname, u.port or 80
        self.api_key = api_key
        self.history = history
        self.tenant = tenant
        self.timeout_s = timeout_s
        self.connect_limit = connect_limit
        self.results: list[dict] = []
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, specs: list[dict]) -> "Burst":
        """Run the burst in a background thread (its own event loop)."""
        self._thread = threading.Thread(target=self._main, args=(specs,), daemon=True, name="apiary-burst")
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> list[dict]:
        assert self._thread is not None, "burst not started"
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"burst did not finish within {timeout_s:.1f}s ({len(self.results)} answered)")
        if self.error is not None:
            raise AssertionError(f"burst failed: {self.error!r}")
        return self.results

    def _main(self, specs: list[dict]) -> None:
        try:
            asyncio.run(self._all(specs))
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    async def _all(self, specs: list[dict]) -> None:
        sem = asyncio.Semaphore(self.connect_limit)
        await asyncio.gather(*(self._one(i, s, sem) for i, s in enumerate(specs)))

    async def _one(self, index: int, spec: dict, sem: asyncio.Semaphore) -> None:
        body = json.dumps({"model": spec.get("model", "tinyllama"), "prompt": spec["prompt"],
                           "max_tokens": spec["max_tokens"], "seed": spec["seed"], "stream": False}).encode()
        req = (f"POST /v1/completions HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
               f"Authorization: Bearer {self.api_key}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        op = self.history.invoke(f"burst-{index}", "complete",
                                 {"prompt": spec["prompt"], "max_tokens": spec["max_tokens"], "seed": spec["seed"],
                                  "model": spec.get("model", "tinyllama"), "stream": False, "chat": False,
                                  "idempotency_key": None}, tenant=self.tenant)
        t0 = time.monotonic()
        result = {"index": index, "prompt": spec["prompt"], "seed": spec["seed"], "max_tokens": spec["max_tokens"]}
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
                try:
                    writer.write(req)
                    await writer.drain()
                    raw = await asyncio.wait_for(reader.read(), self.timeout_s)
                finally:
                    writer.close()
                status, headers, payload = parse_http_response(raw)
                try:
                    data = json.loads(payload) if payload else None
                except ValueError:
                    data = payload[:500].decode("utf-8", "replace")
                result.update(status=status, retry_after=headers.get("retry-after"),
                              job_id=headers.get("x-apiary-job-id") or (data.get("id") if isinstance(data, dict) else None),
                              body=data)
            except (OSError, asyncio.TimeoutError) as exc:
                result.update(status=None, exception=repr(exc))
        result["latency"] = time.monotonic() - t0
        body_ = result.get("body")
        text = None
        if isinstance(body_, dict) and result.get("status") == 200:
            text = ((body_.get("choices") or [{}])[0] or {}).get("text")
        result["text"] = text
        kind = "ok" if result.get("status") == 200 and text is not None else \
            ("info" if result.get("status") is None else "fail")
        self.history.complete(op, kind, {"status": result.get("status"), "text": text, "prompt": spec["prompt"],
                                         "seed": spec["seed"], "max_tokens": spec["max_tokens"],
                                         "retry_after": result.get("retry_after"),
                                         "error": body_.get("error") if isinstance(body_, dict) else None,
                                         "exception": result.get("exception")},
                              job_id=result.get("job_id"), tenant=self.tenant, status=result.get("status"))
        self.results.append(result)
