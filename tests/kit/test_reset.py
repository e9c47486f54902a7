"""The declared reset (x-apiary.reset): sent as declared (method, path, JSON body, the stack's own headers)
to the service's HTTP base; a non-2xx answer is named; no declaration sends nothing; the kit's
before_scenario hook resets only a stack that declares how."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from harness.behave import hooks
from harness.stack.reset import ResetRefused, send_reset
from harness.stack.topology import from_config
from tests.kit.test_topology import model


@pytest.fixture
def server():
    """A loopback HTTP server recording each request; it answers the status in .status."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self):
            length = int(self.headers.get("Content-Length") or 0)
            seen.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                         "body": json.loads(self.rfile.read(length)) if length else None})
            self.send_response(srv.status)
            self.end_headers()
            self.wfile.write(b'{"error": "no"}' if srv.status >= 300 else b"{}")

        do_POST = do_PUT = do_DELETE = do_GET = _any

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.status, srv.seen = 200, seen
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


class Stack:
    """A stack whose db1 answers at the test server, with the reset declared in `reset`."""

    def __init__(self, port: int, reset: dict | None, headers: dict | None = None):
        self.topology = from_config(model(**({"reset": reset} if reset else {})), "x.yml")
        self.port, self.headers, self.resets = port, headers, 0
        if headers is not None:
            self.reset_headers = lambda: self.headers

    def http_url(self, service: str) -> str:
        assert service == "db1", service
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> float:
        self.resets += 1
        send_reset(self)
        return 0.01


RESET = {"service": "db1", "method": "PUT", "path": "/admin/reset?all=1", "body": {"key": "AA==", "n": [1]}}


def test_the_declared_request_goes_out_with_its_body_and_the_stacks_headers(server):
    stack = Stack(server.server_port, RESET, headers={"Authorization": "Bearer k1"})
    assert send_reset(stack) == 200
    assert server.seen == [{"method": "PUT", "path": "/admin/reset?all=1", "auth": "Bearer k1",
                            "body": {"key": "AA==", "n": [1]}}]


def test_a_refused_reset_names_the_request_and_the_status(server):
    server.status = 403
    with pytest.raises(ResetRefused, match=r"x-apiary.reset PUT http://127.0.0.1:\d+/admin/reset\?all=1 answered 403"):
        send_reset(Stack(server.server_port, RESET))


def test_no_declared_reset_sends_nothing(server):
    assert send_reset(Stack(server.server_port, None)) is None
    assert server.seen == []


def test_the_kit_hook_resets_before_each_scenario_only_a_stack_that_declares_how(server):
    declared, bare = Stack(server.server_port, RESET), Stack(server.server_port, None)
    for stack in (declared, bare, declared):
        hooks.open_world(SimpleNamespace(stack=stack))
    assert (declared.resets, bare.resets) == (2, 0) and len(server.seen) == 2


def test_the_compose_files_declare_the_resets_the_stacks_answer():
    from harness.stack.topology import load
    from tests.kit.test_topology import ROOT
    assert load(ROOT / "docker-compose.integration.yml").reset == {"service": "orchestrator", "method": "POST",
                                                            "path": "/v1/admin/reset"}
    etcd = load(ROOT / "examples/etcd/docker-compose.yml").reset
    assert etcd["path"] == "/v3/kv/deleterange" and etcd["body"] == {"key": "AA==", "range_end": "AA=="}
