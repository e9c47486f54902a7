"""Shared helpers of the end-to-end benchmark and the local stack test: a lean asyncio HTTP/1.1 client on raw
streams (keep-alive, Content-Length and chunked bodies, SSE parsing), job specs, percentiles, machine info."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import platform
import time
from typing import Any

from harness.stats import percentile  # noqa: F401  (bench.common.percentile is used by the e2e modules)

try:
    import orjson
    _loads = orjson.loads
    _dumps = orjson.dumps
except ImportError:  # pragma: no cover
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


@dataclasses.dataclass
class Result:
    """What the client saw for one request."""

    index: int = -1
    status: int = 0
    job_id: str | None = None
    text: str = ""
    error_code: str | None = None     # OpenAI error body code, or the SSE error event's code
    sse_error: bool = False           # the stream ended with `event: error`
    done: bool = False                # a stream saw `data: [DONE]`
    exception: str | None = None      # transport problem (closed connection, client timeout)
    t_sched: float = 0.0              # intended start (open loop) or actual start (closed loop)
    t_sent: float = 0.0
    t_first: float | None = None      # first token (streams) or first response byte
    t_end: float = 0.0
    tokens: int = 0

    @property
    def latency(self) -> float:
        return self.t_end - self.t_sched

    @property
    def ttft(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_sched

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.exception is None and not self.sse_error


def job_body(prompt: str, max_tokens: int, seed: int = 0, stream: bool = False, chat: bool = False,
             model: str = "tinyllama") -> bytes:
    if chat:
        return _dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                       "seed": seed, "stream": stream})
    return _dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "seed": seed, "stream": stream})


class Conn:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams (cheap enough to drive thousands of jobs/s)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    # a keep-alive connection idle longer than this is replaced before use: the server (uvicorn, 5 s
    # keep-alive timeout) may be closing it just as a request is written, which would look like a lost job
    IDLE_REOPEN_S = 2.0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes, key: str, stream: bool, result: Result,
                   extra_headers: dict[str, str] | None = None, timeout: float | None = None) -> Result:
        """Send one POST and read its full response into `result` (a timeout or broken connection is recorded)."""
        try:
            if timeout is None:
                await self._post(path, body, key, stream, result, extra_headers)
            else:
                await asyncio.wait_for(self._post(path, body, key, stream, result, extra_headers), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            result.exception = "client_timeout"
            self.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            result.exception = f"{type(exc).__name__}: {exc}"
            self.close()
        result.t_end = self.last_used = time.perf_counter()
        return result

    async def _post(self, path, body, key, stream, result, extra_headers) -> None:
        if self.writer is not None and time.perf_counter() - self.last_used > self.IDLE_REOPEN_S:
            self.close()
        if self.writer is None:
            await self.open()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (extra_headers or {}).items())
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode()
        result.t_sent = time.perf_counter()
        self.writer.write(head + body)
        reader = self.reader
        raw = await reader.readuntil(b"\r\n\r\n")
        if result.t_first is None and not stream:
            result.t_first = time.perf_counter()
        lines = raw.split(b"\r\n")
        result.status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        job_id = headers.get(b"x-apiary-job-id")
        result.job_id = job_id.decode() if job_id else None
        sse = headers.get(b"content-type", b"").startswith(b"text/event-stream")
        if b"content-length" in headers:
            payload = await reader.readexactly(int(headers[b"content-length"]))
            self._json(payload, result)
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            buf = b""
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunk = (await reader.readexactly(size + 2))[:-2]
                if sse:
                    buf += chunk
                    while b"\n\n" in buf:
                        event, buf = buf.split(b"\n\n", 1)
                        self._sse(event, result, parts)
                else:
                    parts.append(chunk)
            if sse:
                result.text = "".join(parts)
            else:
                self._json(b"".join(parts), result)
        else:
            payload = await reader.read()
            self._json(payload, result)
            self.close()
            return
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()

    @staticmethod
    def _json(payload: bytes, result: Result) -> None:
        try:
            data = _loads(payload)
        except Exception:
            result.error_code = f"unparsable body: {payload[:80]!r}"
            return
        if not isinstance(data, dict):
            return
        if "error" in data:
            err = data["error"] if isinstance(data["error"], dict) else {}
            result.error_code = err.get("code") or "error_without_code"
            result.job_id = result.job_id or err.get("job_id")
            return
        choice = (data.get("choices") or [{}])[0]
        if "message" in choice:
            result.text = choice["message"].get("content") or ""
        else:
            result.text = choice.get("text") or ""
        result.tokens = (data.get("usage") or {}).get("completion_tokens", 0)

    @staticmethod
    def _sse(event: bytes, result: Result, parts: list[str]) -> None:
        kind, data = b"message", b""
        for line in event.split(b"\n"):
            if line.startswith(b"event:"):
                kind = line[6:].strip()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if kind == b"error":
            result.sse_error = True
            try:
                err = _loads(data).get("error", {})
                result.error_code = err.get("code") or "error_without_code"
                result.job_id = result.job_id or err.get("job_id")
            except Exception:
                result.error_code = "unparsable_sse_error"
            return
        if data == b"[DONE]":
            result.done = True
            return
        chunk = _loads(data)
        choices = chunk.get("choices") or []
        if not choices:
            return
        choice = choices[0]
        text = choice["delta"].get("content") if "delta" in choice else choice.get("text")
        if text:
            if result.t_first is None:
                result.t_first = time.perf_counter()
            parts.append(text)
            result.tokens += 1


def split_url(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port.rstrip("/"))


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def machine_info() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu_model": cpu,
            "mem_total_bytes": mem, "python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "loadavg_start": [round(x, 2) for x in os.getloadavg()], "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
