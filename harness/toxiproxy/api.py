"""Toxiproxy's HTTP API over a collection of proxies, so existing Toxiproxy clients work unmodified:

GET/POST /proxies, POST /populate, GET/POST/DELETE /proxies/{name}, GET/POST /proxies/{name}/toxics,
GET/POST/DELETE /proxies/{name}/toxics/{toxic}, POST /reset, GET /version. Errors are Toxiproxy's
{"error": message, "status": code}; a bad field's message names it.

ToxiServer runs on an event loop: its own thread (start(), for a harness in another thread, which
then calls call()) or the caller's (serve(), for `python -m harness.toxiproxy`).
"""
from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Callable
from urllib.parse import unquote

from harness.toxiproxy.proxy import Proxy, split_addr
from harness.toxiproxy.toxics import ApiError, calibrate_wake, check_attributes, make_toxic, number

VERSION = "2.12.0-apiary"       # the Toxiproxy API version this follows
MAX_BODY = 1 << 20
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 500: "Internal Server Error"}


class ToxiServer:
    """Proxies by name, with the API's operations as coroutines."""

    def __init__(self) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.api: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.wake_late_s: float | None = None   # the loop's measured timer lateness (toxics.calibrate_wake)

    # ---- operations ----------------------------------------------------------------------------------
    def get(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise ApiError(f"proxy not found: {name!r}", 404) from None

    async def create(self, body: Any, sockets: Callable | None = None, mark: int | None = None) -> Proxy:
        """A proxy from {name, upstream, listen?, enabled?}; started unless enabled is false."""
        if not isinstance(body, dict):
            raise ApiError("bad request body: want a JSON object")
        for field in ("name", "upstream"):
            if not isinstance(body.get(field), str) or not body.get(field):
                raise ApiError(f"missing required field: {field}")
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ApiError(f"bad proxy field: enabled: {enabled!r}, want true or false")
        if body["name"] in self.proxies:
            raise ApiError(f"proxy already exists: {body['name']!r}", 409)
        proxy = Proxy(body["name"], body.get("listen") or "127.0.0.1:0", body["upstream"], enabled, sockets, mark)
        if enabled:
            await proxy.start()
        self.proxies[proxy.name] = proxy
        return proxy

    async def update(self, name: str, body: Any) -> Proxy:
        """New listen/upstream/enabled of a proxy (a changed address restarts it)."""
        proxy = self.get(name)
        if not isinstance(body, dict):
            raise ApiError("bad request body: want a JSON object")
        enabled = body.get("enabled", proxy.enabled)
        if not isinstance(enabled, bool):
            raise ApiError(f"bad proxy field: enabled: {enabled!r}, want true or false")
        moved = False
        for field in ("listen", "upstream"):
            if field in body and body[field] != getattr(proxy, field):
                split_addr(body[field], field)
                setattr(proxy, field, body[field])
                moved = True
        if moved or not enabled:
            await proxy.stop()
        if enabled:
            await proxy.start()
        return proxy

    async def delete(self, name: str) -> None:
        proxy = self.get(name)
        await proxy.stop()
        proxy.reset_toxics()
        del self.proxies[name]

    async def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        for proxy in self.proxies.values():
            proxy.reset_toxics()
            await proxy.start()

    async def populate(self, body: Any) -> list[Proxy]:
        if not isinstance(body, list):
            raise ApiError("bad request body: want a JSON array of proxies")
        made = []
        for item in body:
            name = item.get("name") if isinstance(item, dict) else None
            if name in self.proxies:
                await self.delete(name)
            made.append(await self.create(item))
        return made

    async def close(self) -> None:
        for name in list(self.proxies):
            await self.delete(name)
        if self.api is not None:
            self.api.close()

    # ---- HTTP --------------------------------------------------------------------------------------
    async def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """(status, JSON body) of one API request."""
        parts = [unquote(p) for p in path.split("?", 1)[0].strip("/").split("/")]
        if parts == ["version"] and method == "GET":
            return 200, {"version": VERSION}
        if parts == ["reset"] and method == "POST":
            await self.reset()
            return 204, None
        if parts == ["populate"] and method == "POST":
            return 201, {"proxies": [p.to_json() for p in await self.populate(body)]}
        if parts == ["proxies"]:
            if method == "GET":
                return 200, {n: p.to_json() for n, p in self.proxies.items()}
            if method == "POST":
                return 201, (await self.create(body)).to_json()
        elif len(parts) == 2 and parts[0] == "proxies":
            if method == "GET":
                return 200, self.get(parts[1]).to_json()
            if method in ("POST", "PATCH"):
                return 200, (await self.update(parts[1], body)).to_json()
            if method == "DELETE":
                await self.delete(parts[1])
                return 204, None
        elif len(parts) == 3 and parts[0] == "proxies" and parts[2] == "toxics":
            proxy = self.get(parts[1])
            if method == "GET":
                return 200, [t.to_json() for t in proxy.toxics.values()]
            if method == "POST":
                return 200, proxy.add_toxic(make_toxic(body)).to_json()
        elif len(parts) == 4 and parts[0] == "proxies" and parts[2] == "toxics":
            proxy = self.get(parts[1])
            if method == "GET":
                return 200, proxy.get_toxic(parts[3]).to_json()
            if method in ("POST", "PATCH"):
                return 200, self.update_toxic(proxy, parts[3], body).to_json()
            if method == "DELETE":
                proxy.remove_toxic(parts[3])
                return 204, None
        else:
            raise ApiError(f"no such endpoint: {path}", 404)
        raise ApiError(f"method not allowed: {method} {path}", 405)

    @staticmethod
    def update_toxic(proxy: Proxy, name: str, body: Any):
        if not isinstance(body, dict):
            raise ApiError("bad request body: want a JSON object")
        toxic = proxy.get_toxic(name)
        toxicity = float(number(body["toxicity"], "toxicity", 0, 1)) if "toxicity" in body else None
        attributes = check_attributes(type(toxic), body.get("attributes", {}))
        return proxy.update_toxic(name, toxicity, attributes)

    async def handle_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one connection (keep-alive) until the client closes it."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                length = int(headers.get("content-length") or 0)
                if length > MAX_BODY:
                    raise ApiError("bad request body: too large")
                raw = await reader.readexactly(length) if length else b""
                status, payload = await self.answer(method, path, raw)
                data = b"" if payload is None else (json.dumps(payload) + "\n").encode()
                keep = headers.get("connection", "").lower() != "close"
                writer.write(f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                             .encode() + data)
                await writer.drain()
                if not keep:
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            return
        finally:
            writer.close()

    async def answer(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return 400, {"error": f"bad request body: {exc}", "status": 400}
        try:
            return await self.route(method, path, body)
        except ApiError as exc:
            return exc.status, {"error": exc.message, "status": exc.status}

    async def serve(self, host: str = "127.0.0.1", port: int = 8474) -> int:
        """Start the API on this loop; returns its port."""
        self.loop = asyncio.get_running_loop()
        self.wake_late_s = await calibrate_wake()
        self.api = await asyncio.start_server(self.handle_http, host, port)
        return self.api.sockets[0].getsockname()[1]

    # ---- in a thread of its own ---------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 5.0) -> int:
        """Run the loop (and the API, unless port is None) in a daemon thread; returns the API port (0: none)."""
        ready = threading.Event()
        out: dict = {}

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            try:
                if port is None:
                    self.wake_late_s = loop.run_until_complete(calibrate_wake())
                out["port"] = loop.run_until_complete(self.serve(host, port)) if port is not None else 0
            except OSError as exc:
                out["error"] = exc
            ready.set()
            if "error" not in out:
                loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=main, name="toxiproxy", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError(f"toxiproxy loop did not start within {timeout_s}s")
        if "error" in out:
            raise out["error"]
        return out["port"]

    def call(self, coro_or_fn: Any, timeout_s: float = 10.0) -> Any:
        """Run a coroutine (or a plain function) on the server's loop from another thread; its result."""
        async def wrap():
            return await coro_or_fn if asyncio.iscoroutine(coro_or_fn) else coro_or_fn()
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close every proxy and the API, stop the thread's loop (idempotent)."""
        if self._thread is None or self.loop is None or self.loop.is_closed():
            return
        try:
            self.call(self.close(), timeout_s)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout_s)
            self._thread = None
