"""Test doubles for the hive's tests: a fake orchestrator (ROUTER), fake workers (DEALER) and a hive subprocess."""
from __future__ import annotations

import os
import time

import zmq

from services import protocol as p
from tests.worker.fakes import ROOT, CutProxy, FakeHive, ServiceProcess, free_port, http, wait_until  # noqa: F401  (re-exported)


class FakeOrchestrator(FakeHive):
    """A ROUTER the hive registers with; records frames and acknowledges READY."""

    def register(self, timeout_s: float = 10.0) -> tuple[bytes, dict]:
        """Wait for the hive's READY and acknowledge it."""
        ident, body = self.expect(p.READY, timeout_s)
        self.send(ident, p.READY, {"role": "orchestrator", "id": "fake-orch"})
        self.peers.add(ident)
        return ident, body

    def drain(self, timeout_s: float = 0.05) -> list:
        """Return every frame that arrives within timeout_s of the previous one."""
        got = []
        while (item := self.recv(timeout_s)) is not None:
            got.append(item)
        return got


class FakeWorker:
    """A DEALER speaking AMDP/1 as a worker (no engine: the test answers jobs itself)."""

    def __init__(self, hive_addr: str, worker_id: str, model: str = "tinyllama", slots: int = 2):
        self.id = worker_id
        self.model = model
        self.slots = slots
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, worker_id.encode())
        self.sock.connect(hive_addr)

    def send(self, command: bytes, body: dict | None = None) -> None:
        """Send one frame to the hive."""
        self.sock.send_multipart(p.encode(command, body))

    def send_raw(self, frames: list[bytes]) -> None:
        """Send arbitrary frames (for malformed-frame tests)."""
        self.sock.send_multipart(frames)

    def recv(self, timeout_s: float = 2.0):
        """Return (command, body) of the next frame or None."""
        if self.sock.poll(int(timeout_s * 1000)):
            msg = p.decode(self.sock.recv_multipart())
            return msg.command, msg.body
        return None

    def expect(self, command: bytes, timeout_s: float = 5.0, where=lambda b: True, beat: bool = True) -> dict:
        """Return the body of the first frame with this command, heartbeating meanwhile; fail at the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if beat:
                self.send(p.HEARTBEAT, {"free_slots": self.slots})
            got = self.recv(0.1)
            if got and got[0] == command and where(got[1]):
                return got[1]
        raise AssertionError(f"worker {self.id}: no {p.COMMAND_NAMES[command]} within {timeout_s}s")

    def register(self, timeout_s: float = 3.0, session: str | None = None) -> dict:
        """Send READY (with a session when given) and wait for the hive's ack."""
        body = {"role": "worker", "id": self.id, "model": self.model, "models": [self.model], "slots": self.slots}
        if session is not None:
            body["session"] = session
        self.send(p.READY, body)
        return self.expect(p.READY, timeout_s, beat=False)

    def close(self) -> None:
        """Close the socket (the worker goes silent)."""
        self.sock.close(linger=0)


class HiveProcess(ServiceProcess):
    """A `python -m services.worker_manager` subprocess on free ports."""

    def __init__(self, orch_addr: str, cache_dir: str, hive_id: str = "hive-t", **env: str):
        self.worker_port = free_port()
        self.hive_id = hive_id
        http_port = free_port()
        super().__init__("services.worker_manager", f"hive {hive_id}", http_port, {
            **os.environ, "PYTHONPATH": str(ROOT), "APIARY_HIVE_ID": hive_id, "APIARY_CURVE": "off",
            "APIARY_ORCHESTRATOR_ADDR": orch_addr, "APIARY_HTTP_PORT": str(http_port),
            "APIARY_HTTP_HOST": "127.0.0.1", "APIARY_WORKER_BIND": f"tcp://127.0.0.1:{self.worker_port}",
            "APIARY_MODEL_CACHE": cache_dir, "APIARY_LOG_LEVEL": "info",
            "APIARY_HEARTBEAT_LIVENESS": "10", **env})  # 2 s expiry: fakes only beat while polled

    @property
    def worker_addr(self) -> str:
        """Return the endpoint workers connect to."""
        return f"tcp://127.0.0.1:{self.worker_port}"

    def get(self, path: str):
        """GET a JSON path."""
        return http("GET", self.url + path)

    def metric(self, name: str, labels: str = "") -> float:
        """Return one sample of /metrics (0 when absent)."""
        _, text = http("GET", self.url + "/metrics")
        needle = name + ("{" + labels + "}" if labels else "")
        for line in str(text).splitlines():
            if line.startswith(needle + " "):
                return float(line.split()[-1])
        return 0.0
