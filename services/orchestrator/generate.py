"""POST /v1/completions and /v1/chat/completions: admission, idempotency, deadlines, waiting and SSE."""
from __future__ import annotations

import asyncio
import functools
import hashlib

from .http_util import Ctx, HTTPError
from .jobs import ERROR_STATUS, ERROR_TYPE
from .openai_api import ChunkWriter, completion_body, header_number, parse_chat, parse_completion, sse_error
from .scheduler import AdmissionError

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


async def completions(app, ctx: Ctx) -> None:
    """POST /v1/completions."""
    await _generate(app.service, ctx, "completion")


async def chat(app, ctx: Ctx) -> None:
    """POST /v1/chat/completions."""
    await _generate(app.service, ctx, "chat")


async def _generate(service, ctx: Ctx, kind: str) -> None:
    """Admit one generation request (or replay its idempotent twin) and answer it, streamed or whole."""
    settings, scheduler = service.settings, service.scheduler
    raw = await ctx.read_body(settings.max_body_bytes)
    parse = parse_chat if kind == "chat" else parse_completion
    params = parse(raw, settings.max_tokens_limit)
    trace_id = ctx.resolve_trace_id()
    given = ctx.headers.get(b"x-request-timeout")
    timeout_s = settings.request_timeout_s if given is None else header_number("X-Request-Timeout", given)
    idem = ctx.headers.get(b"idempotency-key")
    key = fingerprint = None
    if idem is not None:
        key = (ctx.tenant, idem.decode("latin-1"))
        fingerprint = hashlib.sha256(ctx.route.encode() + b"\0" + raw).hexdigest()
        known = scheduler.idem.get(key)
        if known is not None:
            if known[0] != fingerprint:
                raise HTTPError(409, "Idempotency-Key was already used with a different request body",
                                param="Idempotency-Key", code="idempotency_key_reused")
            job = scheduler.jobs.get(known[1])
            if job is not None:
                await asyncio.shield(job.done)  # a waiting retry must not cancel the original's future
                await (replay_stream(ctx, job, params) if params.stream else answer(ctx, job))
                return
    try:
        job = scheduler.admit(ctx.tenant, params.model, params.prompt, params.max_tokens, params.seed,
                              params.stream, trace_id, kind, timeout_s)
    except AdmissionError as exc:
        raise HTTPError(exc.status, exc.message,
                        "invalid_request_error" if exc.status == 404 else "server_error" if exc.status >= 500
                        else "rate_limit_error", "model" if exc.status == 404 else None, exc.code,
                        exc.headers) from None
    if key is not None:
        scheduler.idem[key] = (fingerprint, job.id)
        job.idem = key
    watcher = None
    if not job.done.done():
        watcher = asyncio.ensure_future(ctx.receive())
        watcher.add_done_callback(functools.partial(_client_message, scheduler, job))
    try:
        if params.stream:
            await stream(ctx, job, params)
        else:
            await job.done
            await answer(ctx, job)
    finally:
        if watcher is not None and not watcher.done():
            watcher.cancel()


def _client_message(scheduler, job, task: asyncio.Future) -> None:
    """The client went away: cancel its job (CANCEL reaches the worker at once)."""
    if task.cancelled() or task.exception() is not None:
        return
    if task.result().get("type") == "http.disconnect" and not job.terminal:
        scheduler.cancel(job, "cancelled", "cancelled", "client disconnected")


def _job_headers(job) -> list:
    return [(b"x-apiary-job-id", job.id.encode()), (b"x-trace-id", job.trace_id.encode("latin-1"))]


def job_error(job) -> HTTPError:
    code = job.error or "worker_error"
    status = ERROR_STATUS.get(code, 502)
    headers = {"Retry-After": "1"} if status == 503 else {}
    return HTTPError(status, job.error_message or code, ERROR_TYPE.get(code, "server_error"), None, code, headers,
                     job_id=job.id)


async def answer(ctx: Ctx, job) -> None:
    """Answer a finished non-streamed job: the completion, or its specific error status."""
    if job.state == "completed":
        await ctx.respond(200, completion_body(job), _job_headers(job))
        return
    err = job_error(job)
    headers = _job_headers(job) + [(k.encode(), v.encode()) for k, v in err.headers.items()]
    await ctx.respond(err.status, err.body(), headers)


async def stream(ctx: Ctx, job, params) -> None:
    """Relay tokens as SSE chunks; an error before the first token is a plain HTTP error."""
    writer = ChunkWriter(job)
    items = await job.sink.take()
    if items[0][0] == "end" and job.state != "completed":
        await answer(ctx, job)
        return
    ctx.status = 200
    send = ctx.send
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + _job_headers(job)})
    buf = writer.first()
    while True:
        ended = False
        for kind, text in items:
            if kind == "token":
                buf += writer.token(text)
            else:
                ended = True
        if ended:
            break
        await send({"type": "http.response.body", "body": buf, "more_body": True})
        buf = b""
        items = await job.sink.take()
    if job.state == "completed":
        buf += writer.last(params.include_usage)
    else:
        err = job_error(job)
        buf += sse_error(job, err.error["code"], err.error["message"], err.error["type"])
    await send({"type": "http.response.body", "body": buf, "more_body": False})


async def replay_stream(ctx: Ctx, job, params) -> None:
    """An idempotent retry of a streamed request: replay the finished job's tokens."""
    if job.state != "completed" and not job.parts:
        await answer(ctx, job)
        return

    class _Replay:
        def __init__(self, items):
            self.items = items

        async def take(self):
            items, self.items = self.items, [("end", None)]
            return items

    replay = type("J", (), {})()
    for name in ("id", "kind", "created", "model", "finish_reason", "trace_id", "state", "error", "error_message",
                 "prompt", "completion_tokens"):
        setattr(replay, name, getattr(job, name))
    replay.sink = _Replay([("token", part) for part in job.parts] + [("end", None)])
    await stream(ctx, replay, params)
