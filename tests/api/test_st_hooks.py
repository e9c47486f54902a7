"""The schemathesis run's own logic: the 504 rule of st_hooks.py and the shards covering every path once."""
from __future__ import annotations

import re

import pytest

from services.orchestrator.routes import ROUTES
from tests.api.st_hooks import CLIENT_DEADLINE_MAX_S, deadline_problem
from tests.api.test_schemathesis import SHARDS, shard_regexes


def timeout_body(deadline: str, code: str = "timeout") -> dict:
    return {"error": {"message": f"job cmpl-1 exceeded its deadline of {deadline} s", "type": "timeout_error",
                      "param": None, "code": code, "job_id": "cmpl-1"}}


@pytest.mark.parametrize("status,body,header,idempotent,elapsed", [
    (200, {}, None, False, 0.1),                                   # not a 504: not this check's business
    (504, timeout_body("0.3"), "0.3", False, 0.31),                 # the client's own short deadline
    (504, timeout_body("4.94066e-324"), "5e-324", False, 0.002),    # the smallest positive double
    (504, timeout_body("0.3"), None, True, 0.01),                   # an idempotent replay of such a job
])
def test_expired_short_client_deadlines_pass(status, body, header, idempotent, elapsed):
    assert deadline_problem(status, body, header, idempotent, elapsed) is None


@pytest.mark.parametrize("body,header,idempotent,elapsed,why", [
    (timeout_body("30"), None, False, 30.0, "a job that should have finished"),    # the default deadline
    (timeout_body("0.3"), None, False, 0.3, "without an X-Request-Timeout"),
    (timeout_body("0.5"), "0.3", False, 0.6, "but the request asked for 0.3"),
    (timeout_body("0.5"), "0.5", False, 0.1, "before the client's deadline"),
    (timeout_body(str(CLIENT_DEADLINE_MAX_S * 2)), str(CLIENT_DEADLINE_MAX_S * 2), False, 2.1, "should have"),
    (timeout_body("0.3", code="worker_lost"), "0.3", False, 0.4, "not a 'timeout' error"),
    ({"error": {"code": "timeout", "message": "late"}}, "0.3", False, 0.4, "names no deadline"),
    ("<html>gateway</html>", "0.3", False, 0.4, "not a 'timeout' error"),
])
def test_other_504s_fail(body, header, idempotent, elapsed, why):
    problem = deadline_problem(504, body, header, idempotent, elapsed)
    assert problem is not None and why in problem, problem


def test_shards_cover_every_path_exactly_once():
    paths = sorted({route.path for route in ROUTES})
    regexes = shard_regexes(paths)
    assert len(regexes) == len(SHARDS)
    for path in paths + ["/v1/new-endpoint"]:
        matches = [rx for rx in shard_regexes(paths + ["/v1/new-endpoint"]) if re.match(rx, path)]
        assert len(matches) == 1, (path, matches)
    assert not any(re.match(rx, "/v1/models/provision/x") for rx in regexes)  # anchored
