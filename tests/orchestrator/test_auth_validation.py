"""Auth (401/403/404 across tenants, key never logged) and request validation (status + param)."""
from __future__ import annotations

import pytest
import requests

from .fakes import wait_until


def test_missing_and_wrong_key_401(orch):
    for key in (None, "wrong-key"):
        r = orch.post("/v1/completions", {"model": "tinyllama", "prompt": "x"}, key=key)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="apiary"'
        assert r.json()["error"]["type"] == "authentication_error"
    r = orch.post("/v1/completions", {}, headers={"Authorization": "Basic Zm9vOmJhcg=="}, key=None)
    assert r.status_code == 401
    for path in ("/v1/models", "/v1/workers", "/v1/jobs/x"):
        assert orch.get(path, key=None).status_code == 401


def test_admin_routes_need_admin_tenant(orch):
    assert orch.post("/v1/admin/reset", key="key-a").status_code == 403
    assert orch.post("/v1/admin/shutdown", key="key-b").status_code == 403
    r = orch.post("/v1/admin/reset", key="key-admin")
    assert r.status_code == 200 and "cancelled" in r.json()


def test_other_tenant_job_is_404(orch, make_hive):
    make_hive()
    job_id = orch.post("/v1/completions", {"model": "tinyllama", "prompt": "x", "max_tokens": 1}).json()["id"]
    assert orch.get(f"/v1/jobs/{job_id}", key="key-a").status_code == 200
    r = orch.get(f"/v1/jobs/{job_id}", key="key-b")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    assert orch.get("/v1/jobs/cmpl-doesnotexist").status_code == 404


def test_key_never_logged(orch):
    orch.post("/v1/completions", {"model": "tinyllama", "prompt": "x"}, key="super-secret-wrong-key")
    orch.post("/v1/completions", {"model": "nope", "prompt": "x"}, key="key-a")
    wait_until(lambda: orch.lines, 2, "some log lines")
    text = "\n".join(orch.lines)
    for secret in ("key-a", "key-b", "key-admin", "super-secret-wrong-key"):
        assert secret not in text
    assert orch.log_event("auth.keys_loaded")["fingerprints"]


VALID = {"model": "tinyllama", "prompt": "x"}


@pytest.mark.parametrize("body,param,status", [
    (b"{not json", None, 400),
    (b"[1, 2]", None, 400),
    ({"prompt": "x"}, "model", 400),
    ({"model": 5, "prompt": "x"}, "model", 400),
    ({"model": "tinyllama"}, "prompt", 400),
    ({"model": "tinyllama", "prompt": 3}, "prompt", 400),
    ({"model": "tinyllama", "prompt": ["a", "b"]}, "prompt", 400),
    ({**VALID, "max_tokens": 0}, "max_tokens", 400),
    ({**VALID, "max_tokens": 4097}, "max_tokens", 400),
    ({**VALID, "max_tokens": "5"}, "max_tokens", 400),
    ({**VALID, "max_tokens": 2.5}, "max_tokens", 400),
    ({**VALID, "seed": "x"}, "seed", 400),
    ({**VALID, "stream": "yes"}, "stream", 400),
    ({**VALID, "n": 2}, "n", 400),
    ({**VALID, "temperature": "hot"}, "temperature", 400),
    ({**VALID, "stop": 5}, "stop", 400),
    ({"model": "unknown-model", "prompt": "x"}, "model", 404),
])
def test_completion_validation(orch, body, param, status):
    r = orch.post("/v1/completions", body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"]
    if body == b"{not json":
        assert "invalid json" in err["message"].lower()
    if status == 404:
        assert err["code"] == "model_not_found"


@pytest.mark.parametrize("body,param", [
    ({"model": "tinyllama"}, "messages"),
    ({"model": "tinyllama", "messages": []}, "messages"),
    ({"model": "tinyllama", "messages": ["hi"]}, "messages[0]"),
    ({"model": "tinyllama", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "tinyllama", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "tinyllama", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, "max_tokens"),
])
def test_chat_validation(orch, body, param):
    r = orch.post("/v1/chat/completions", body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_accepted_ignored_fields(orch, make_hive):
    make_hive()
    body = {**VALID, "temperature": 0.7, "top_p": 1, "n": 1, "user": "u", "stop": ["\n"], "max_tokens": 1}
    assert orch.post("/v1/completions", body).status_code == 200


def test_body_too_large_413(orch):
    big = b'{"model": "tinyllama", "prompt": "' + b"x" * (1 << 20) + b'"}'
    r = orch.post("/v1/completions", big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the streamed body is counted
        yield b'{"model": "tinyllama", "prompt": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'
    r = orch.post("/v1/completions", chunks())
    assert r.status_code == 413


def test_bad_request_timeout_header(orch):
    r = orch.post("/v1/completions", VALID, headers={"X-Request-Timeout": "soon"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "X-Request-Timeout"


@pytest.mark.parametrize("method,path,allowed", [
    ("DELETE", "/v1/models", {"GET", "HEAD"}), ("PUT", "/v1/completions", {"POST"}),
    ("GET", "/v1/chat/completions", {"POST"}), ("PATCH", "/v1/jobs/abc", {"GET", "HEAD"}),
    ("TRACE", "/health", {"GET", "HEAD"}), ("GET", "/v1/admin/reset", {"POST"}),
])
def test_undeclared_method_is_405_with_allow(orch, method, path, allowed):
    r = requests.request(method, orch.url + path, headers={"Authorization": "Bearer key-a"}, timeout=5)
    assert r.status_code == 405, r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_spec_declares_exactly_the_served_methods(orch):
    spec = requests.get(orch.url + "/openapi.json", timeout=5).json()
    for path, item in spec["paths"].items():
        r = requests.request("DELETE", orch.url + path.replace("{id}", "x"), timeout=5)
        if "delete" not in item:
            assert {m.strip().lower() for m in r.headers["allow"].split(",")} - {"head"} == set(item), path


@pytest.mark.parametrize("body,status,param", [
    ({"model": "m", "hives": ["no-such-hive"]}, 404, "hives"),
    ({"model": "m", "hives": []}, 400, "hives"),
    ({"model": "m", "size_bytes": 2 ** 24 + 1}, 400, "size_bytes"),
    ({"model": "m", "size_bytes": 0}, 400, "size_bytes"),
    ({"model": ""}, 400, "model"),
    ({"size_bytes": 5}, 400, "model"),
])
def test_provision_validation(orch, body, status, param):
    r = orch.post("/v1/models/provision", body)
    assert r.status_code == status and r.json()["error"]["param"] == param, r.text


def test_chat_message_shape_is_closed(orch):
    msgs = [{"role": "user", "content": "x", "tool_calls": []}]
    r = orch.post("/v1/chat/completions", {"model": "tinyllama", "messages": msgs})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].tool_calls"
    assert r.json()["error"]["code"] == "unknown_parameter"
