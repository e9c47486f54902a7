"""Local launcher: orchestrator + hives + mock workers as processes on 127.0.0.1 with free ports.

    python -m services.stack [--hives 2] [--workers-per-hive 2] [--json] [--workdir DIR] [--keep]

Starts the stack, waits until the orchestrator's /ready is 200 and /v1/workers lists every worker as
ready, prints the API URL and a key, and stops everything on Ctrl-C / SIGTERM (SIGTERM to each service,
then SIGKILL to its process group after a grace period, so engine subprocesses die too).

Also the one launcher of local service processes: tests/, bench/ and the harness's `--backend local`
(apiary_suite/local.py, an adapter giving it the harness's Stack shape) all start the stack through LocalStack:

    with LocalStack(hives=2, workers_per_hive=2) as stack:
        stack.api_url, stack.key, stack.events_url, stack.pid("worker-a1")
        stack.kill("worker-a1"); stack.pause("hive-b"); stack.resume("hive-b"); stack.restart("worker-a1")
        with stack.events() as sub: sub.wait_for("worker.lost", worker_id="worker-a1")

Each spawn mirrors the pids to <workdir>/local-stack.json, so kill_leftovers(workdir) can end the services of
a launcher whose own process died.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from services.curve import curve_enabled, load_keys, make_keyset
from services.stack_events import EventSubscriber

ROOT = Path(__file__).resolve().parent.parent
MODULES = {"orchestrator": "services.orchestrator", "hive": "services.worker_manager",
           "worker": "services.mock_worker"}
DEFAULT_KEYS = {"tenant-a": "key-a", "tenant-b": "key-b", "tenant-c": "key-c", "admin": "key-admin"}
STATE_FILE = "local-stack.json"


class StackError(RuntimeError):
    """The stack did not come up (the message names what is missing and quotes the logs)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind port 0, read it, release it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kind_of(name: str) -> str:
    """The role of a service name: orchestrator, hive or worker."""
    return "orchestrator" if name == "orchestrator" else name.split("-")[0]


def http_get(url_base: str, path: str, key: str | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    """GET a path on 127.0.0.1; returns (status, decoded JSON or text)."""
    host, port = url_base.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")
    finally:
        conn.close()


class LocalStack:
    """Orchestrator + `hives` hives + `workers_per_hive` workers each, as local processes (own process groups)."""

    def __init__(self, hives: int = 2, workers_per_hive: int = 2, workdir: str | Path | None = None,
                 env: dict[str, str] | None = None, worker_env: dict[str, str] | None = None,
                 orchestrator_env: dict[str, str] | None = None, hive_env: dict[str, str] | None = None,
                 keys: dict[str, str] | None = None, keep: bool = False, python: str = sys.executable,
                 prefix: dict[str, list[str]] | None = None, curve: bool | None = None):
        """curve: CURVE on every link (default: on unless APIARY_CURVE=off), with a key set made in workdir."""
        if not 1 <= hives <= 26 or workers_per_hive < 1:
            raise ValueError("hives must be 1..26 and workers_per_hive >= 1")
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="apiary-stack-"))
        self.keep = keep
        self.python = python
        self.prefix = dict(prefix or {})  # kind -> interpreter args before "-m module" (e.g. a profiler)
        self.keys = dict(keys or DEFAULT_KEYS)
        self.extra = {"all": dict(env or {}), "orchestrator": dict(orchestrator_env or {}),
                      "hive": dict(hive_env or {}), "worker": dict(worker_env or {})}
        letters = string.ascii_lowercase[:hives]
        self.hive_ids = [f"hive-{c}" for c in letters]
        self.worker_ids = [f"worker-{c}{i}" for c in letters for i in range(1, workers_per_hive + 1)]
        self.names = ["orchestrator", *self.hive_ids, *self.worker_ids]
        self.ports: dict[str, dict[str, int]] = {n: {"http": free_port()} for n in self.names}
        self.ports["orchestrator"].update(router=free_port(), events=free_port())
        for hive in self.hive_ids:
            self.ports[hive]["router"] = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.paused: set[str] = set()
        self.started = False
        on = curve_enabled() if curve is None else curve
        self.curve_root = make_keyset(self.workdir / "curve") if on else None  # a fresh key set per stack

    # ---- addresses ------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['orchestrator']['http']}"

    @property
    def events_url(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['orchestrator']['events']}"

    @property
    def router_url(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['orchestrator']['router']}"

    @property
    def key(self) -> str:
        """A tenant key (the first non-admin tenant)."""
        return next((k for t, k in self.keys.items() if t != "admin"), next(iter(self.keys.values())))

    @property
    def admin_key(self) -> str:
        return self.keys.get("admin", self.key)

    def http_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]['http']}"

    def router_url_of(self, name: str) -> str:
        """The ROUTER endpoint of the orchestrator or of a hive."""
        return self.router_url if name == "orchestrator" else f"tcp://127.0.0.1:{self.ports[name]['router']}"

    def client_keys(self):
        """The CURVE keys of an authorised client (probes, subscribers), None with APIARY_CURVE=off."""
        return None if self.curve_root is None else load_keys(self.curve_root / "client", "client")

    def hive_of(self, worker: str) -> str:
        return "hive-" + worker.split("-", 1)[1][0]

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    # ---- processes ------------------------------------------------------------------------------
    def env_for(self, name: str) -> dict[str, str]:
        kind, ports = kind_of(name), self.ports[name]
        env = dict(os.environ, PYTHONUNBUFFERED="1", APIARY_HTTP_HOST="127.0.0.1", APIARY_HTTP_PORT=str(ports["http"]),
                   APIARY_SHUTDOWN_GRACE_S=os.environ.get("APIARY_SHUTDOWN_GRACE_S", "2"))
        env.update(self.extra["all"])
        if self.curve_root is not None:
            env.update(APIARY_CURVE="on", APIARY_CURVE_DIR=str(self.curve_root / kind))
        else:
            env.update(APIARY_CURVE="off")
        if kind == "orchestrator":
            env.update(APIARY_ROUTER_BIND=self.router_url, APIARY_EVENTS_BIND=self.events_url,
                       APIARY_DB_PATH=str(self.workdir / "data" / "registry.db"),
                       APIARY_API_KEYS=",".join(f"{t}:{k}" for t, k in self.keys.items()))
        elif kind == "hive":
            env.update(APIARY_HIVE_ID=name, APIARY_ORCHESTRATOR_ADDR=self.router_url,
                       APIARY_WORKER_BIND=f"tcp://127.0.0.1:{ports['router']}",
                       APIARY_MODEL_CACHE=str(self.workdir / "data" / "models" / name))
        else:
            hive = self.hive_of(name)
            env.update(APIARY_WORKER_ID=name, APIARY_HIVE_ADDR=f"tcp://127.0.0.1:{self.ports[hive]['router']}",
                       APIARY_LEDGER_PATH=str(self.workdir / "data" / f"ledger-{name}.jsonl"))
        env.update(self.extra[kind])
        return env

    def spawn(self, name: str) -> subprocess.Popen:
        """Start one service in its own session (process group); output appended to logs/<name>.log."""
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "data" / "models").mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            kind = kind_of(name)
            argv = [self.python, *self.prefix.get(kind, []), "-m", MODULES[kind]]
            proc = subprocess.Popen(argv, cwd=ROOT, env=self.env_for(name), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self.paused.discard(name)
        self.save_state()
        return proc

    def save_state(self) -> None:
        """Mirror pids and ports to <workdir>/local-stack.json (what kill_leftovers reads)."""
        data = {"pids": {n: p.pid for n, p in self.procs.items()}, "ports": self.ports}
        (self.workdir / STATE_FILE).write_text(json.dumps(data))

    def start(self, timeout: float = 30.0, cancel: threading.Event | None = None) -> "LocalStack":
        """Spawn everything and wait until ready; on failure (or `cancel`) stop what started and raise."""
        self.started = True
        try:
            for name in self.names:
                self.spawn(name)
            self.wait_ready(timeout, cancel=cancel)
        except BaseException:
            self.stop()
            raise
        return self

    def workers_view(self) -> dict:
        status, body = http_get(self.api_url, "/v1/workers", self.admin_key)
        return body if status == 200 and isinstance(body, dict) else {}

    def not_ready(self, workers: list[str] | None = None) -> list[str]:
        """What is still missing: dead processes, orchestrator not ready, workers not ready."""
        wanted = workers or self.worker_ids
        needed = {"orchestrator", *wanted, *(self.hive_of(w) for w in wanted)}
        dead = [n for n, p in self.procs.items() if n in needed and p.poll() is not None]
        if dead:
            raise StackError(self.diagnose(f"exited: {', '.join(dead)}", dead))
        try:
            status, _ = http_get(self.api_url, "/ready", timeout=1)
            if status != 200:
                return ["orchestrator /ready"]
            states = {w.get("id"): w.get("state") for w in self.workers_view().get("workers", [])}
        except (OSError, http.client.HTTPException):
            return ["orchestrator"]
        return [w for w in wanted if states.get(w) != "ready"]

    def wait_ready(self, timeout: float = 30.0, workers: list[str] | None = None,
                   cancel: threading.Event | None = None) -> float:
        """Until /ready is 200 and every (listed) worker is ready in /v1/workers; returns seconds waited
        (KeyboardInterrupt when `cancel` is set first)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        cancel = cancel or threading.Event()
        missing: list[str] = []
        while time.monotonic() < deadline:
            missing = self.not_ready(workers)
            if not missing:
                return time.monotonic() - t0
            if cancel.wait(0.05):
                raise KeyboardInterrupt
        raise StackError(self.diagnose(f"not ready within {timeout:.0f}s: {', '.join(missing)}", self.names))

    def diagnose(self, headline: str, names: list[str], lines: int = 8) -> str:
        out = [headline]
        for name in names:
            proc = self.procs.get(name)
            rc = None if proc is None else proc.poll()
            out.append(f"--- {name} (pid {proc.pid if proc else '-'}, exit {rc}) {self.log_path(name)}")
            try:
                out += ["    " + ln for ln in self.log_path(name).read_text("utf-8", "replace").splitlines()[-lines:]]
            except OSError:
                pass
        return "\n".join(out)

    def _signal_group(self, proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _sigterm(self, names: list[str]) -> None:
        """SIGCONT the paused ones among `names`, then SIGTERM each live one (it drains and stops its engine)."""
        for name in names:
            if name in self.paused:
                self._signal_group(self.procs[name], signal.SIGCONT)
                self.paused.discard(name)
            if self.procs[name].poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.procs[name].send_signal(signal.SIGTERM)

    def _end(self, name: str, deadline: float) -> bool:
        """Wait for `name` until the deadline, then SIGKILL its process group (the group may still hold an
        engine subprocess when the leader exited); True when it had to be killed."""
        proc = self.procs[name]
        try:
            proc.wait(max(0.01, deadline - time.monotonic()))
            late = False
        except subprocess.TimeoutExpired:
            late = True
        self._signal_group(proc, signal.SIGCONT)
        self._signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        self.paused.discard(name)
        return late

    def stop(self, grace: float = 5.0) -> list[str]:
        """SIGTERM every service, SIGKILL its process group after `grace`; returns the names killed."""
        self._sigterm(list(self.procs))
        deadline = time.monotonic() + grace
        killed = [name for name in list(self.procs) if self._end(name, deadline)]
        if self._own_dir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return killed

    def terminate(self, name: str, grace: float = 10.0) -> bool:
        """Stop one service: SIGTERM, SIGKILL its group after `grace` (at once with grace 0); True if killed."""
        if grace > 0:
            self._sigterm([name])
        return self._end(name, time.monotonic() + grace)

    def __enter__(self) -> "LocalStack":
        return self if self.started else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- faults ---------------------------------------------------------------------------------
    def kill(self, name: str, sig: int | str = signal.SIGKILL, group: bool = False) -> float:
        """Send `sig` (a number or a name like "SIGTERM") to the process (or its whole group); returns the
        monotonic instant it was sent."""
        proc = self.procs[name]
        sig = signal.Signals[sig] if isinstance(sig, str) else sig
        t = time.monotonic()
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        return t

    def pause(self, name: str) -> float:
        """SIGSTOP the process group (worker + its engine); returns the instant."""
        t = time.monotonic()
        os.killpg(self.procs[name].pid, signal.SIGSTOP)
        self.paused.add(name)
        return t

    def resume(self, name: str) -> float:
        t = time.monotonic()
        os.killpg(self.procs[name].pid, signal.SIGCONT)
        self.paused.discard(name)
        return t

    def restart(self, name: str, wait: bool = True, timeout: float = 15.0, grace: float = 0.0) -> None:
        """End `name` (terminate with `grace`; 0: SIGKILL the whole group at once) and start it again;
        optionally wait until it is ready."""
        self.terminate(name, grace)
        self.spawn(name)
        if wait:
            workers = [name] if kind_of(name) == "worker" else \
                [w for w in self.worker_ids if self.hive_of(w) == name] if kind_of(name) == "hive" else None
            self.wait_ready(timeout, workers)

    def events(self, topics: tuple[str, ...] = ("",), connect_timeout: float = 5.0) -> EventSubscriber:
        """A started subscriber to the orchestrator's PUB socket (the caller stops it); StackError if it cannot connect."""
        sub = EventSubscriber(self.events_url, topics, name="stack-events", curve=self.client_keys())
        if not sub.start(connect_timeout).connected:
            sub.stop()
            raise StackError(self.diagnose(f"no handshake with the event PUB at {self.events_url} within "
                                           f"{connect_timeout:.0f}s", ["orchestrator"]))
        return sub

    def describe(self) -> dict:
        return {"api_url": self.api_url, "key": self.key, "keys": self.keys, "events_url": self.events_url,
                "router_url": self.router_url, "workdir": str(self.workdir),
                "services": {n: {"pid": p.pid, "kind": kind_of(n), **self.ports[n]} for n, p in self.procs.items()}}


def kill_leftovers(workdir: str | Path) -> list[int]:
    """SIGKILL the process groups recorded in <workdir>/local-stack.json that still run one of our service
    modules (a reused pid is left alone); returns the pids killed."""
    path = Path(workdir) / STATE_FILE
    if not path.exists():
        return []
    import psutil
    killed = []
    for pid in json.loads(path.read_text()).get("pids", {}).values():
        try:
            if not any(m in " ".join(psutil.Process(pid).cmdline()) for m in MODULES.values()):
                continue
            os.killpg(pid, signal.SIGCONT)
            os.killpg(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return killed


if __name__ == "__main__":      # python -m services.stack: the CLI (services/stack_cli.py)
    from services.stack_cli import main
    sys.exit(main())
