"""Test doubles for the orchestrator: a FAKE HIVE speaking AMDP/1 over a real DEALER, and a subprocess runner.

The fake hive registers workers, heartbeats, answers REQUEST with PARTIAL/FINAL computed by
`generate_text`, confirms CANCEL, and can be told to hang, reject, fail, pause or send raw frames.
"""
from __future__ import annotations

import heapq
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import requests
import zmq

from services import protocol as p
from tests.worker.fakes import free_port, wait_until  # noqa: F401  (re-exported to the orchestrator tests)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable


class FakeHive:
    """A hive in a thread: DEALER to the orchestrator, scripted workers, a record of every frame received."""

    def __init__(self, endpoint: str, hive_id: str, workers: list[dict], interval_s: float = 0.05,
                 token_delay_s: float = 0.0):
        self.endpoint, self.id, self.interval_s = endpoint, hive_id, interval_s
        self.workers = {w["id"]: {"model": "tinyllama", "slots": 4, "mode": "normal", **w} for w in workers}
        self.token_delay_s = token_delay_s
        self.received: list[tuple[float, str, dict]] = []
        self.requests: list[dict] = []
        self.cancels: list[tuple[float, dict]] = []
        self.ready_acks = 0
        self.paused = False
        self.stopping = False
        self.heartbeats = True
        self._timers: list = []
        self._seq = itertools.count()
        self._outbox: list[list[bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._thread = threading.Thread(target=self._run, name=f"fake-hive-{hive_id}", daemon=True)

    # ---- control -----------------------------------------------------------------------------------
    def start(self) -> "FakeHive":
        self._thread.start()
        wait_until(lambda: self.ready_acks > 0, 5, f"{self.id} registered (READY ack)")
        return self

    def stop(self, graceful: bool = True) -> None:
        self.stopping = True
        if graceful and self._thread.is_alive() and not self.paused:  # a paused hive is already lost
            self.send(p.DISCONNECT, {"reason": "test over"})
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(timeout=5)
        self._ctx.destroy(linger=0)

    def send(self, command: bytes, body: dict) -> None:
        self.send_raw(p.encode(command, body))

    def send_raw(self, frames: list[bytes]) -> None:
        with self._lock:
            self._outbox.append(frames)

    def ready_body(self) -> dict:
        return {"role": "hive", "id": self.id, "models": [],
                "workers": [{"id": wid, "role": "worker", "model": w["model"], "models": [w["model"]],
                             "slots": w["slots"], "free_slots": w["slots"], "state": "ready"}
                            for wid, w in self.workers.items()]}

    def commands(self, name: str) -> list[dict]:
        return [body for _, cmd, body in list(self.received) if cmd == name]

    # ---- loop --------------------------------------------------------------------------------------
    def _later(self, delay: float, frames: list[bytes]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), frames))

    def _run(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.id.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        sock.send_multipart(p.encode(p.READY, self.ready_body()))
        next_beat = time.monotonic()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not self._stop.is_set():
            now = time.monotonic()
            if not self.paused:
                if now >= next_beat and self.heartbeats:
                    next_beat = now + self.interval_s
                    ages = {wid: {"age_s": 0.01, "free_slots": w["slots"], "state": "ready"}
                            for wid, w in self.workers.items()}
                    sock.send_multipart(p.encode(p.HEARTBEAT, {"workers": ages}))
                with self._lock:
                    outbox, self._outbox = self._outbox, []
                for frames in outbox:
                    sock.send_multipart(frames)
                while self._timers and self._timers[0][0] <= now:
                    sock.send_multipart(heapq.heappop(self._timers)[2])
            if dict(poller.poll(2)).get(sock) and not self.paused:
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._handle(sock, frames)
        sock.close(linger=0)

    def _handle(self, sock, frames) -> None:
        msg = p.decode(frames)
        body = msg.body
        self.received.append((time.monotonic(), msg.name, body))
        if msg.command == p.READY:
            self.ready_acks += 1
        elif msg.command == p.DISCONNECT and not self.stopping:
            sock.send_multipart(p.encode(p.READY, self.ready_body()))
        elif msg.command == p.REQUEST:
            self.requests.append(body)
            self._answer(body)
        elif msg.command == p.CANCEL:
            self.cancels.append((time.monotonic(), body))
            self._later(0, p.encode(p.ERROR, p.error_body(p.CANCELLED, "cancelled", body["job_id"],
                                                          body["attempt"])))
        elif msg.command == p.SHUTDOWN:
            self._later(0.01, p.encode(p.DISCONNECT, {"reason": "shutdown"}))

    def _answer(self, req: dict) -> None:
        worker = self.workers.get(req["worker_id"], {"mode": "normal"})
        mode = worker["mode"]
        job_id, attempt = req["job_id"], req["attempt"]
        if mode == "hang":
            return
        if mode == "reject":
            self._later(0, p.encode(p.ERROR, p.error_body(p.REJECTED, "rejecting jobs", job_id, attempt)))
            return
        if mode == "error":
            self._later(0, p.encode(p.ERROR, p.error_body(p.WORKER_ERROR, "engine crashed", job_id, attempt)))
            return
        tokens = [p.generate_token(req["prompt"], req["seed"], i) for i in range(req["max_tokens"])]
        delay = worker.get("token_delay_s", self.token_delay_s)
        stop_after = worker.get("stop_after")  # "die" after this many tokens: never send FINAL
        if req.get("stream"):
            for i, tok in enumerate(tokens):
                if stop_after is not None and i >= stop_after:
                    return
                self._later(delay * (i + 1), p.encode(p.PARTIAL, {"job_id": job_id, "attempt": attempt, "seq": i,
                                                                  "text": tok, "worker_id": req["worker_id"]}))
            self._later(delay * (len(tokens) + 1), p.encode(p.FINAL, {"job_id": job_id, "attempt": attempt,
                                                                      "tokens": len(tokens), "finish_reason": "length"}))
        else:
            if stop_after is not None:
                return
            self._later(delay * len(tokens), p.encode(p.FINAL, {"job_id": job_id, "attempt": attempt,
                                                                "tokens": len(tokens), "text": "".join(tokens),
                                                                "finish_reason": "length"}))


class Orch:
    """The orchestrator as a subprocess on free ports, with its JSON log lines collected."""

    def __init__(self, tmp_path, **env):
        self.http_port = free_port()
        self.db_path = str(env.pop("db_path", tmp_path / "data" / "registry.db"))
        self.env = dict(os.environ, APIARY_HTTP_PORT=str(self.http_port), APIARY_HTTP_HOST="127.0.0.1",
                        APIARY_ROUTER_BIND="tcp://127.0.0.1:*", APIARY_EVENTS_BIND="tcp://127.0.0.1:*",
                        APIARY_DB_PATH=self.db_path, APIARY_HEARTBEAT_INTERVAL_S="0.1",
                        APIARY_SHUTDOWN_GRACE_S="1", PYTHONUNBUFFERED="1",
                        APIARY_CURVE="off")  # fake peers speak plain ZMTP; CURVE has its own tests (tests/security/)
        self.env.update({k: str(v) for k, v in env.items()})
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.router = self.events = None

    def start(self) -> "Orch":
        self.proc = subprocess.Popen([PY, "-m", "services.orchestrator"], cwd=ROOT, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._pump, daemon=True).start()
        started = wait_until(lambda: self.log_event("orchestrator.started") or self.proc.poll() is not None, 15,
                             "orchestrator started")
        assert self.proc.poll() is None, "orchestrator exited:\n" + "\n".join(self.lines[-20:])
        self.router, self.events = started["router"], started["events"]

        def healthy():
            try:
                return requests.get(self.url + "/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_until(healthy, 10, "orchestrator /health answers 200")
        return self

    def _pump(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def logs(self) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def log_event(self, event: str) -> dict | None:
        for entry in self.logs():
            if entry.get("event") == event:
                return entry
        return None

    def stop(self, sig=signal.SIGTERM, timeout_s: float = 10) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("orchestrator did not exit after SIGTERM")

    # ---- HTTP helpers ------------------------------------------------------------------------------
    def post(self, path: str, body=None, key: str | None = "key-a", headers: dict | None = None, **kw):
        hdrs = dict(headers or {})
        if key:
            hdrs["Authorization"] = f"Bearer {key}"
        if isinstance(body, (dict, list)):
            kw["json"] = body
        elif body is not None:
            kw["data"] = body
        return requests.post(self.url + path, headers=hdrs, timeout=kw.pop("timeout", 10), **kw)

    def get(self, path: str, key: str | None = "key-a", **kw):
        hdrs = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.get(self.url + path, headers=hdrs, timeout=10, **kw)

    def metric(self, name: str, labels: dict | None = None) -> float:
        text = requests.get(self.url + "/metrics", timeout=5).text
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted((labels or {}).items())) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0
