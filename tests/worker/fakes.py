"""Test doubles for the mock worker's tests: a fake hive (ROUTER) and a subprocess launcher for the worker."""
from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import zmq

from apiary_suite.stackops import free_port  # noqa: F401  (re-exported to the hive and orchestrator fakes)
from services import protocol as p

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], object], timeout_s: float, err_msg: str, interval_s: float = 0.01):
    """Poll condition until truthy (return it) or fail naming what did not happen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s: {err_msg}")
        time.sleep(interval_s)


def http(method: str, url: str, body: object | None = None, timeout_s: float = 2.0) -> tuple[int, object]:
    """Send an HTTP request; return (status, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


class FakeHive:
    """A ROUTER speaking AMDP/1 that records what workers send."""

    def __init__(self, port: int | None = None):
        self.ctx = zmq.Context.instance()
        self.port = port or free_port()
        self.sock: zmq.Socket | None = None
        self.peers: set[bytes] = set()   # identities heartbeated while the test waits
        self.silent = False              # True: stop heartbeating (simulate a hung peer)
        self._next_beat = 0.0
        self.open()

    def open(self) -> None:
        """Bind the ROUTER (again after close())."""
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.bind(f"tcp://127.0.0.1:{self.port}")

    @property
    def addr(self) -> str:
        """Return the endpoint workers connect to."""
        return f"tcp://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Unbind (the hive 'dies')."""
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def beat(self) -> None:
        """Heartbeat every known peer when due (every 0.1 s)."""
        now = time.monotonic()
        if self.silent or now < self._next_beat or self.sock is None:
            return
        self._next_beat = now + 0.1
        for ident in self.peers:
            self.sock.send_multipart([ident, *p.encode(p.HEARTBEAT, {})])

    def recv_raw(self, timeout_s: float) -> list[bytes] | None:
        """Return the next multipart (identity first), or None at the deadline; heartbeats peers meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.beat()
            left = deadline - time.monotonic()
            if self.sock.poll(int(max(0.0, min(0.05, left)) * 1000)):
                return self.sock.recv_multipart()
            if left <= 0:
                return None

    def recv(self, timeout_s: float = 2.0):
        """Return (identity, command, body) of the next well-formed frame or None."""
        frames = self.recv_raw(timeout_s)
        if frames is None:
            return None
        ident, rest = p.split_envelope(frames)
        msg = p.decode(rest)
        return ident, msg.command, msg.body

    def expect(self, command: bytes, timeout_s: float = 5.0, where: Callable[[dict], bool] = lambda b: True,
               seen: list | None = None):
        """Return (identity, body) of the first frame with this command matching `where`; fail at the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.recv(max(0.0, deadline - time.monotonic()))
            if got is None:
                break
            if seen is not None:
                seen.append(got)
            if got[1] == command and where(got[2]):
                return got[0], got[2]
        raise AssertionError(f"no {p.COMMAND_NAMES[command]} frame within {timeout_s}s")

    def send(self, ident: bytes, command: bytes, body: dict | None = None) -> None:
        """Send one frame to a worker."""
        self.sock.send_multipart([ident, *p.encode(command, body)])

    def register(self, timeout_s: float = 10.0) -> tuple[bytes, dict]:
        """Wait for a worker's READY and acknowledge it."""
        ident, body = self.expect(p.READY, timeout_s)
        self.send(ident, p.READY, {"role": "hive", "id": "fake-hive"})
        self.peers.add(ident)
        return ident, body

    def request(self, ident: bytes, job_id: str, prompt: str = "hello bees", seed: int = 7, max_tokens: int = 5,
                stream: bool = False, attempt: int = 1, model: str = "tinyllama") -> None:
        """Send a REQUEST for one job."""
        self.send(ident, p.REQUEST, {"job_id": job_id, "trace_id": "t-" + job_id, "worker_id": ident.decode(),
                                     "model": model, "prompt": prompt, "max_tokens": max_tokens, "seed": seed,
                                     "attempt": attempt, "stream": stream})

    def collect_job(self, job_id: str, timeout_s: float = 5.0) -> tuple[list[dict], dict, bytes]:
        """Gather PARTIAL bodies of a job until its FINAL or ERROR; return (partials, last body, command)."""
        partials: list[dict] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.recv(max(0.0, deadline - time.monotonic()))
            if got is None:
                break
            _, command, body = got
            if body.get("job_id") != job_id:
                continue
            if command == p.PARTIAL:
                partials.append(body)
            elif command in (p.FINAL, p.ERROR):
                return partials, body, command
        raise AssertionError(f"job {job_id} did not end within {timeout_s}s ({len(partials)} partials)")


class ServiceProcess:
    """A `python -m <module>` service subprocess with an HTTP port on 127.0.0.1 (stderr kept: its JSON log)."""

    def __init__(self, module: str, name: str, http_port: int, env: dict[str, str]):
        self.http_port = http_port
        self.name = name
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def url(self) -> str:
        """Return the service's HTTP base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    def wait_http(self, timeout_s: float = 10.0) -> None:
        """Wait until /health answers."""
        def up():
            try:
                return http("GET", self.url + "/health", timeout_s=0.5)[0] == 200
            except OSError:
                return False
        wait_until(up, timeout_s, f"{self.name} /health never answered")

    def wait_exit(self, timeout_s: float = 10.0) -> int:
        """Wait for the process to exit and return its code."""
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> str:
        """Kill the process if still running and return its stderr (the JSON log)."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            _, err = self.proc.communicate(timeout=5)
        except (subprocess.TimeoutExpired, ValueError):
            err = b""
        return (err or b"").decode(errors="replace")


class WorkerProcess(ServiceProcess):
    """A `python -m services.mock_worker` subprocess on free ports."""

    def __init__(self, hive_addr: str, worker_id: str = "w1", **env: str):
        self.worker_id = worker_id
        http_port = free_port()
        super().__init__("services.mock_worker", f"worker {worker_id}", http_port, {
            **os.environ, "PYTHONPATH": str(ROOT), "APIARY_WORKER_ID": worker_id, "APIARY_CURVE": "off",
            "APIARY_HIVE_ADDR": hive_addr, "APIARY_HTTP_PORT": str(http_port),
            "APIARY_HTTP_HOST": "127.0.0.1", "APIARY_LOAD_TIME_S": "0.01",
            "APIARY_TOKENS_PER_S": "0", "APIARY_LOG_LEVEL": "info",
            "APIARY_HEARTBEAT_LIVENESS": "10",  # 2 s expiry: the fake only beats while polled
            "APIARY_LEDGER_PATH": os.path.join(tempfile.mkdtemp(prefix="apiary-ledger-"), f"{worker_id}.jsonl"), **env})

    def put_faults(self, faults: dict) -> tuple[int, object]:
        """PUT /faults."""
        return http("PUT", self.url + "/faults", faults)


class CutProxy:
    """A TCP proxy that can cut the link the way a partition does: connections are accepted, then silent.

    While cut, a new connection completes at the TCP level but no byte ever crosses it (like a
    connect sent from a stale source address that will never be answered, a half-open peer), and
    a forwarded connection that carries a byte during the cut goes silent for good.  heal() forwards
    new connections again; connections touched by the cut stay dead, as after a real partition.
    """

    def __init__(self, target_port: int, cut: bool = False):
        self.target_port = target_port
        self.cut = cut
        self.accepted = 0
        self._sel = selectors.DefaultSelector()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cut-proxy", daemon=True)
        self._thread.start()

    @property
    def addr(self) -> str:
        """Return the endpoint to connect to instead of the target."""
        return f"tcp://127.0.0.1:{self.port}"

    def cut_link(self) -> None:
        """Partition: new and existing connections go silent."""
        self.cut = True

    def heal(self) -> None:
        """Reconnect the network: new connections are forwarded (the silent ones stay silent)."""
        self.cut = False

    def close(self) -> None:
        """Stop the proxy and close every connection."""
        self._stop.set()
        self._thread.join(timeout=2)
        for sock in [self._listener, *self._pairs, *self._held]:
            try:
                sock.close()
            except OSError:
                pass

    def _run(self) -> None:
        self._sel.register(self._listener, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.05):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock in self._pairs:
                    self._pump(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.accepted += 1
        if self.cut:
            self._held.append(client)  # accepted, never answered
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        for a, b in ((client, upstream), (upstream, client)):
            self._pairs[a] = b
            self._sel.register(a, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        peer = self._pairs[sock]
        if not data:  # one side closed: close both
            for s in (sock, peer):
                self._pairs.pop(s, None)
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
            return
        if self.cut:  # the partition swallows it; this connection never carries a byte again
            for s in (sock, peer):
                self._pairs.pop(s, None)
                self._sel.unregister(s)
                self._held.append(s)
            return
        try:
            peer.sendall(data)
        except OSError:
            pass
