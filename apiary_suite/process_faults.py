"""Process faults: kill / pause / resume / stop / start / restart through the cluster, and the services'
own fault knobs (worker crash, hang, OOM, reject, error, unhealthy; hive corrupt downloads) over HTTP."""
from __future__ import annotations

from typing import Any

import requests

from harness.nemesis.audit import FaultLog

class ProcessNemesis:
    """Fault verbs over services; remembers what it did so heal() puts every service back running."""

    def __init__(self, cluster: Any, log: FaultLog, http_timeout_s: float = 5.0):
        self.cluster = cluster
        self.log = log
        self.http_timeout_s = http_timeout_s
        self._paused: set[str] = set()
        self._down: set[str] = set()       # killed/stopped/crashing by us: start them on heal
        self._faulted: set[str] = set()      # services whose knobs we set: switched off on heal
        self._current: dict[str, dict] = {}  # service -> fault set we last PUT

    # ---- container / process verbs ---------------------------------------------------------------
    def status(self, service: str) -> dict:
        return self.cluster.inspect(service) or {}

    def running(self, service: str) -> bool:
        st = self.status(service)
        return str(st.get("status", "")).lower() in ("running", "up", "healthy")

    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        def apply() -> str:
            self._down.add(service)
            self.cluster.kill(service, signal=signal)
            return signal
        self.log.run("kill", {"service": service, "signal": signal}, apply)

    def pause(self, service: str) -> None:
        if service in self._paused:
            self.log.note("pause", {"service": service, "skipped": "already paused"})
            return
        self.log.run("pause", {"service": service}, lambda: self.cluster.pause(service))
        self._paused.add(service)

    def resume(self, service: str) -> None:
        if service not in self._paused:
            self.log.note("resume", {"service": service, "skipped": "not paused by us"})
            return
        self.log.run("resume", {"service": service}, lambda: self.cluster.unpause(service))
        self._paused.discard(service)

    def stop(self, service: str) -> None:
        self._down.add(service)
        self.log.run("stop", {"service": service}, lambda: self.cluster.stop(service))

    def start(self, service: str) -> None:
        self.log.run("start", {"service": service}, lambda: self.cluster.start(service))
        self._down.discard(service)

    def restart(self, service: str) -> None:
        self.log.run("restart", {"service": service}, lambda: self.cluster.restart(service))
        self._down.discard(service)
        self._faulted.discard(service)     # a restarted worker starts with its env faults only
        self._current.pop(service, None)

    # ---- service fault knobs ------------------------------------------------------------------------
    def faults_url(self, service: str) -> str:
        return self.cluster.http_url(service).rstrip("/") + "/faults"

    def get_faults(self, service: str) -> dict:
        resp = requests.get(self.faults_url(service), timeout=self.http_timeout_s)
        resp.raise_for_status()
        return resp.json()

    def set_faults(self, service: str, merge: bool = True, **faults: Any) -> dict:
        """PUT faults on a worker or hive (`/faults` replaces the set, so by default the knobs we set
        earlier are merged in), remembering to switch them off on heal."""
        if merge:
            faults = {**self._current.get(service, {}), **faults}
        faults = {k: v for k, v in faults.items() if v is not None}
        self._current[service] = dict(faults)

        def apply() -> Any:
            resp = requests.put(self.faults_url(service), json=faults, timeout=self.http_timeout_s)
            if resp.status_code >= 400:
                raise RuntimeError(f"PUT {self.faults_url(service)} {faults} -> {resp.status_code} {resp.text[:300]}")
            return resp.json() if resp.content else None
        self._faulted.add(service)
        if any(k in faults for k in ("crash_after_tokens", "oom", "exit_code")):
            self._down.add(service)   # it may die: make sure heal starts it again
        return self.log.run("faults", {"service": service, "faults": faults}, apply)

    def clear_faults(self, service: str) -> None:
        """Switch every knob of a worker or hive off (PUT /faults replaces the whole set, so an empty one)."""
        self._faulted.discard(service)
        self._current.pop(service, None)
        self.log.run("clear-faults", {"service": service},
                     lambda: requests.put(self.faults_url(service), json={}, timeout=self.http_timeout_s).status_code)

    def crash_after_tokens(self, service: str, tokens: int, exit_code: int = 1) -> dict:
        return self.set_faults(service, crash_after_tokens=tokens, exit_code=exit_code)

    def oom(self, service: str, when: str = "now") -> dict:
        return self.set_faults(service, oom=when)

    def hang(self, service: str) -> dict:
        return self.set_faults(service, hang=True)

    def slow(self, service: str, tokens_per_s: float) -> dict:
        return self.set_faults(service, tokens_per_s=tokens_per_s)

    # ---- heal -------------------------------------------------------------------------------------------
    def heal(self) -> list[str]:
        """Unpause, restart what we took down (if it is not running), switch fault knobs off."""
        errors = []
        for s in sorted(self._paused):
            try:
                self.resume(s)
            except Exception as exc:  # noqa: BLE001 - heal the rest, report all
                errors.append(f"resume {s}: {exc!r}")
        for s in sorted(self._down):
            try:
                if not self.running(s):
                    self.start(s)
                    self._faulted.discard(s)     # a fresh process starts with no runtime faults
                    self._current.pop(s, None)
                self._down.discard(s)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"start {s}: {exc!r}")
        for s in sorted(self._faulted):
            try:
                if self.running(s):
                    self.clear_faults(s)
                else:
                    self._faulted.discard(s)
                    self._current.pop(s, None)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"clear faults {s}: {exc!r}")
        return errors
