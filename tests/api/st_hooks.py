"""schemathesis hooks for the API fuzz run: a 504 counts only when it is a short client deadline that expired."""
from __future__ import annotations

import re

import schemathesis

CLIENT_DEADLINE_MAX_S = 1.0  # a healthy local stack finishes any job well inside a deadline this long
_DEADLINE = re.compile(r"exceeded its deadline of ([0-9.eE+-]+) s")


def deadline_problem(status: int, body, timeout_header, idempotent: bool, elapsed_s: float) -> str | None:
    """Return why a 504 is not an expired client deadline of <= CLIENT_DEADLINE_MAX_S (None when it is).

    An idempotent retry replays the first request's answer, so its deadline is read from the message
    (the job's own deadline); without an Idempotency-Key it must be the X-Request-Timeout sent.
    """
    if status != 504:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or error.get("code") != "timeout":
        return f"504 whose body is not a 'timeout' error: {body!r:.200}"
    found = _DEADLINE.search(str(error.get("message", "")))
    if found is None:
        return f"504 whose message names no deadline: {error.get('message')!r:.200}"
    deadline = float(found.group(1))
    if deadline > CLIENT_DEADLINE_MAX_S:
        return f"504 on a deadline of {deadline} s (> {CLIENT_DEADLINE_MAX_S} s): a job that should have finished"
    if not idempotent:
        if timeout_header is None:
            return "504 without an X-Request-Timeout header: the server's default deadline expired"
        sent = float(str(timeout_header))
        if abs(sent - deadline) > 1e-6 * max(1.0, sent):
            return f"504 names a deadline of {deadline} s but the request asked for {sent} s"
        if elapsed_s + 0.001 < deadline:
            return f"504 after {elapsed_s:.4f} s, before the client's deadline of {deadline} s"
    return None


@schemathesis.check
def gateway_timeout_is_the_clients_deadline(ctx, response, case):
    """A 504 (let through not_a_server_error by schemathesis.toml) must be an expired short client deadline."""
    if response.status_code != 504:
        return None
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - a non-JSON 504 is reported by deadline_problem
        body = None
    headers = {str(k).lower(): v for k, v in (case.headers or {}).items()}
    problem = deadline_problem(504, body, headers.get("x-request-timeout"), "idempotency-key" in headers,
                               response.elapsed)
    if problem:
        raise AssertionError(problem)
    return None
