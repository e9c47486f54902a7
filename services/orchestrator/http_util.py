"""Minimal raw-ASGI request/response helpers: the hot path avoids per-request framework objects."""
from __future__ import annotations

import logging
import os

from services.protocol import dumps

log = logging.getLogger("orchestrator.http")
JSON_HEADERS = [(b"content-type", b"application/json")]


class HTTPError(Exception):
    """An error answer: status, OpenAI-style error object and extra headers."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.error = {"message": message, "type": type_, "param": param, "code": code, **extra}
        self.headers = headers or {}

    def body(self) -> bytes:
        return dumps({"error": self.error})


class Ctx:
    """One HTTP request: scope pieces, lower-cased headers, tenant and trace id."""

    __slots__ = ("scope", "receive", "send", "headers", "tenant", "trace_id", "route", "status")

    def __init__(self, scope, receive, send, route: str):
        self.scope, self.receive, self.send, self.route = scope, receive, send, route
        self.headers = dict(scope["headers"])
        self.tenant: str | None = None
        self.trace_id: str | None = None
        self.status = 0

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    def resolve_trace_id(self) -> str:
        """trace id from `traceparent` (its trace-id field), `X-Trace-Id`, or a new one."""
        parent = self.headers.get(b"traceparent")
        if parent:
            parts = parent.split(b"-")
            if len(parts) >= 4 and len(parts[1]) == 32:
                self.trace_id = parts[1].decode("latin-1")
                return self.trace_id
        given = self.headers.get(b"x-trace-id")
        if given and len(given) <= 128:
            self.trace_id = given.decode("latin-1")
        else:
            self.trace_id = os.urandom(16).hex()
        return self.trace_id

    async def read_body(self, limit: int) -> bytes:
        """Read the whole body, raising 413 past `limit` (Content-Length checked first)."""
        length = self.headers.get(b"content-length")
        if length is not None:
            try:
                if int(length) > limit:
                    raise _too_large(limit)
            except ValueError:
                raise HTTPError(400, "invalid Content-Length header", param="Content-Length") from None
        chunks = []
        size = 0
        receive = self.receive
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def respond(self, status: int, body: bytes, headers: list | None = None,
                      content_type: bytes = b"application/json") -> None:
        self.status = status
        hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if headers:
            hdrs.extend(headers)
        await self.send({"type": "http.response.start", "status": status, "headers": hdrs})
        await self.send({"type": "http.response.body", "body": body})

    async def json(self, status: int, obj, headers: list | None = None) -> None:
        await self.respond(status, dumps(obj), headers)

    async def error(self, exc: HTTPError) -> None:
        headers = [(k.encode(), str(v).encode()) for k, v in exc.headers.items()]
        await self.respond(exc.status, exc.body(), headers)


class ClientGone(Exception):
    """The client disconnected while we were reading its request."""


def _too_large(limit: int) -> HTTPError:
    return HTTPError(413, f"request body exceeds the limit of {limit} bytes", param=None,
                     code="request_too_large")


class Endpoint:
    """One route's `async handler(app, ctx)` as an ASGI app: auth, OpenAI-style JSON errors, metrics by label."""

    def __init__(self, app, route):
        self.app, self.service = app, app.service
        self.route, self.handler, self.auth, self.admin = route.label, route.handler, route.auth, route.admin

    async def __call__(self, scope, receive, send) -> None:
        ctx = Ctx(scope, receive, send, self.route)
        service = self.service
        try:
            if self.auth:
                tenant = service.auth.tenant_for(ctx.headers.get(b"authorization"))
                if tenant is None:
                    raise HTTPError(401, "Missing or invalid API key: send 'Authorization: Bearer <key>'",
                                    "authentication_error", None, "invalid_api_key",
                                    {"WWW-Authenticate": 'Bearer realm="apiary"'})
                if self.admin and not service.auth.is_admin(tenant):
                    raise HTTPError(403, f"tenant '{tenant}' may not use admin routes", "permission_error",
                                    None, "forbidden")
                ctx.tenant = tenant
            await self.handler(self.app, ctx)
        except HTTPError as exc:
            if not ctx.status:
                await ctx.error(exc)
        except ClientGone:
            ctx.status = 499
        except Exception:
            log.exception("request handler failed", extra={"event": "http.handler_error", "route": self.route,
                                                           "trace_id": ctx.trace_id})
            if not ctx.status:
                await ctx.error(HTTPError(500, "internal error", "server_error", None, "internal_error"))
        service.metrics.http(self.route, ctx.status or 500)
