"""CURVE on every ZeroMQ link of the local stack (on by default): authorised peers work, the rest are refused and counted."""
from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest
import requests
import zmq

from apiary_suite.rogue import RoguePeer, step
from harness.wait import wait_until
from services import protocol as p
from services.protocol import generate_text
from services.stack import LocalStack, http_get

pytestmark = pytest.mark.slow
MODEL = "tinyllama"


def refusals(base_url: str) -> dict[str, float]:
    """apiary_curve_refusals_total by "link/reason", read from a service's /metrics."""
    status, text = http_get(base_url, "/metrics")
    assert status == 200, text
    pattern = r'^apiary_curve_refusals_total\{link="([^"]+)",reason="([^"]+)"\} ([0-9.e+]+)$'
    return {f"{link}/{reason}": float(n) for link, reason, n in re.findall(pattern, text, re.M)}


def complete(stack: LocalStack, prompt: str, n: int = 4) -> str:
    """One completion through the HTTP API; asserts the mock model's exact text and returns it."""
    r = requests.post(stack.api_url + "/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": n,
                      "seed": 7}, headers={"Authorization": f"Bearer {stack.key}"}, timeout=15)
    assert r.status_code == 200, r.text
    text = r.json()["choices"][0]["text"]
    assert text == generate_text(prompt, 7, n), (prompt, text)
    return text


@pytest.fixture(scope="module")
def stack():
    with LocalStack(hives=1, workers_per_hive=1).start() as s:
        yield s


def test_the_stack_runs_encrypted_by_default(stack):
    """Every service got a key directory; hive and worker registered through CURVE and jobs run."""
    assert stack.curve_root is not None and (stack.curve_root / "orchestrator" / "self.key_secret").is_file()
    assert stack.env_for("worker-a1")["APIARY_CURVE_DIR"].endswith("curve/worker")
    complete(stack, "curve works")
    started = [json.loads(line) for line in stack.log_path("orchestrator").read_text().splitlines()
               if "orchestrator.started" in line]
    assert started and started[-1]["curve"] is True


@pytest.mark.parametrize("key", ["none", "stranger"])
def test_a_rogue_hive_without_a_listed_key_gets_no_request(stack, key):
    """A rogue hive with an idle ready worker, while tenants send completions: no REQUEST, not listed, counted."""
    before = refusals(stack.api_url)
    done = threading.Event()

    def tenants():
        while not done.is_set():
            complete(stack, f"tenant prompt {time.monotonic()}")
    load = threading.Thread(target=tenants, daemon=True)
    load.start()
    try:
        got = RoguePeer(stack).impersonate_hive(f"rogue-{key}", MODEL, key=key, listen_ms=2000)
    finally:
        done.set()
        load.join(20)
    assert not [r for r in got["replies"] if r.get("command") == "REQUEST"], got
    assert got["replies"] == [], f"a refused peer must hear nothing at all: {got['replies']}"
    assert "succeeded" not in got["handshakes"], got["handshakes"]
    ids = {w["id"] for w in http_get(stack.api_url, "/v1/workers", stack.admin_key)[1]["workers"]}
    assert not any(i.startswith("rogue-") for i in ids), ids
    reasons = {"none": ("no-key", "aborted"), "stranger": ("unknown-key",)}[key]
    after = refusals(stack.api_url)
    assert sum(after.get(f"router/{r}", 0) - before.get(f"router/{r}", 0) for r in reasons) >= 1, (before, after)


def test_an_authorised_probe_hive_is_served(stack):
    """The same probe with the run's client key registers and gets REQUESTs: the refusals above are CURVE's."""
    result = {}
    probe = threading.Thread(target=lambda: result.update(
        RoguePeer(stack).impersonate_hive("probe-hive-ok", "probe-model", key="client", listen_ms=3000)))
    probe.start()
    wait_until(lambda: _listed(stack, "probe-hive-ok-w1"), 10, err_msg="the authorised probe's worker listed in /v1/workers")
    requests.post(stack.api_url + "/v1/completions", json={"model": "probe-model", "prompt": "to the probe",
                  "max_tokens": 2}, headers={"Authorization": f"Bearer {stack.key}", "X-Request-Timeout": "1"},
                  timeout=10)
    probe.join(15)
    assert "succeeded" in result["handshakes"]
    assert any(r.get("command") == "REQUEST" and r["body"].get("prompt") == "to the probe" for r in result["replies"])


def _listed(stack: LocalStack, worker_id: str) -> bool:
    workers = http_get(stack.api_url, "/v1/workers", stack.admin_key)[1]["workers"]
    return any(w["id"] == worker_id for w in workers)


def test_a_subscriber_without_a_key_gets_no_event_and_is_counted(stack):
    """The event PUB refuses a plain subscriber; the run's key gets the same events."""
    before = refusals(stack.api_url)
    ctx = zmq.Context()
    plain, keyed = ctx.socket(zmq.SUB), ctx.socket(zmq.SUB)
    try:
        for sock in (plain, keyed):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        keys = stack.client_keys()
        keyed.setsockopt(zmq.CURVE_SERVERKEY, keys.server_key("orchestrator"))
        keyed.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
        keyed.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
        plain.connect(stack.events_url)
        keyed.connect(stack.events_url)
        time.sleep(0.3)  # let both subscriptions reach the PUB before the events are published
        for i in range(3):
            complete(stack, f"events {i}")
        assert keyed.poll(3000), "the keyed subscriber got no event"
        assert not plain.poll(500), "the plain subscriber got an event"
    finally:
        plain.close(0)
        keyed.close(0)
        ctx.term()
    after = refusals(stack.api_url)
    assert sum(after.get(f"events/{r}", 0) - before.get(f"events/{r}", 0) for r in ("no-key", "aborted")) >= 1, \
        (before, after)


def test_a_worker_without_a_key_is_refused_by_the_hive(stack):
    """The hive ROUTER refuses a plain worker and counts it in the hive's own metrics."""
    hive_url = stack.http_url("hive-a")
    before = refusals(hive_url)
    got = RoguePeer(stack).run_raw("hive-a", [step(p.encode(p.HEARTBEAT, {}), wait_ms=300)], key="none")
    assert "succeeded" not in got["handshakes"]
    after = refusals(hive_url)
    assert sum(after.get(f"router/{r}", 0) - before.get(f"router/{r}", 0) for r in ("no-key", "aborted")) >= 1, \
        (before, after)


class Tap(threading.Thread):
    """A TCP relay that keeps every byte it forwards (to show what crosses the wire)."""

    def __init__(self, upstream: tuple[str, int]):
        super().__init__(daemon=True)
        self.upstream, self.bytes, self.server = upstream, bytearray(), socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream)
            except OSError:  # the orchestrator is not listening yet: the hive reconnects
                conn.close()
                continue
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.bytes.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()


@pytest.mark.parametrize("curve", ["on", "off"])
def test_prompts_cross_the_control_link_encrypted(curve, tmp_path):
    """With CURVE the prompt never appears in the hive<->orchestrator bytes; with APIARY_CURVE=off it does."""
    s = LocalStack(hives=1, workers_per_hive=1, workdir=tmp_path, curve=curve == "on")
    tap = Tap(("127.0.0.1", s.ports["orchestrator"]["router"]))
    tap.start()
    s.extra["hive"]["APIARY_ORCHESTRATOR_ADDR"] = f"tcp://127.0.0.1:{tap.port}"
    with s.start():
        complete(s, "the queen's secret recipe", 3)
    tap.server.close()
    assert len(tap.bytes) > 1000, "the tap saw no traffic: the hive did not go through it"
    assert (b"the queen's secret recipe" in tap.bytes) == (curve == "off")
