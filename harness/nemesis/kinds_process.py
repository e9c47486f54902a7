"""Process fault kinds: `pause` (docker pause / SIGSTOP), `kill` (SIGKILL, the orchestrator included),
`restart` (graceful: SIGTERM then start) and `oom` (the request the stack's x-apiary.oom declares makes a
service of its roles allocate past its cgroup limit). verify() reads the container's state: paused, exited
137, restarted (new StartedAt), OOM-killed."""
from __future__ import annotations

from typing import Any

import requests

from harness.errors import NemesisError
from harness.nemesis.protocol import (DOWN, ActiveFault, FaultKind, check_number, downstream, ensure_running, is_docker,
                                      poll, register, require_running, role, services_of, state_of)
from harness.stack import topology_of


def send_trigger(method: str, url: str, body: Any = None, timeout_s: float = 5.0) -> int:
    """Send a declared trigger request (JSON body if any); returns the HTTP status."""
    return requests.request(method, url, json=body, timeout=timeout_s).status_code


class Paused(ActiveFault):
    """verify: the container is paused; heal: unpause."""

    def check(self) -> tuple[bool, Any]:
        st = state_of(self.stack, self.target)
        return st.get("status") == "paused", st

    def undo(self) -> list[str]:
        if state_of(self.stack, self.target).get("status") == "paused":
            self.stack.unpause(self.target)
        st = state_of(self.stack, self.target).get("status")
        return [f"{self.target} still paused"] if st == "paused" else []


class Killed(ActiveFault):
    """verify: exited with 137 (SIGKILL); heal: start it."""

    def check(self) -> tuple[bool, Any]:
        def once() -> tuple[bool, dict]:
            st = state_of(self.stack, self.target)
            return st.get("status") in DOWN and st.get("exit_code") == 137, st
        return poll(once, self.params["verify_timeout_s"])

    def undo(self) -> list[str]:
        return ensure_running(self.stack, self.target)


class Restarted(ActiveFault):
    """verify: running with a new StartedAt; heal: it runs, and so do the services its graceful stop took
    down (a hive's SIGTERM cascades SHUTDOWN to its workers, which exit 0)."""

    def cascaded(self) -> list[str]:
        """Downstream services that ran before the restart and have since exited cleanly."""
        return [d for d in self.applied.get("downstream_running", [])
                if (st := state_of(self.stack, d)).get("status") in DOWN and st.get("exit_code") == 0]

    def check(self) -> tuple[bool, Any]:
        before = self.applied.get("started_before")

        def once() -> tuple[bool, dict]:
            st = state_of(self.stack, self.target)
            ok = st.get("status") == "running" and bool(st.get("started_at")) and st.get("started_at") != before
            return ok, {**st, "started_before": before}
        held, ev = poll(once, self.params["verify_timeout_s"])
        return held, {**ev, "cascaded": self.cascaded()}

    def undo(self) -> list[str]:
        left = ensure_running(self.stack, self.target)
        for d in self.cascaded():
            left += ensure_running(self.stack, d)
        return left


class OomKilled(ActiveFault):
    """verify: exited 137 with OOMKilled set; heal: start it."""

    def check(self) -> tuple[bool, Any]:
        def once() -> tuple[bool, dict]:
            st = state_of(self.stack, self.target)
            return st.get("status") in DOWN and st.get("exit_code") == 137 and st.get("oom_killed") is True, st
        return poll(once, self.params["verify_timeout_s"])

    def undo(self) -> list[str]:
        return ensure_running(self.stack, self.target)


@register
class Pause(FaultKind):
    """Freeze every process of a service (docker pause)."""

    name = "pause"
    defaults: dict = {}

    def targets(self, stack: Any) -> list[str]:
        return services_of(stack)

    def apply(self, stack: Any, target: str, **params: Any) -> Paused:
        p = self.check_params(params)
        self.check_target(stack, target)
        require_running(stack, self.name, target)
        stack.pause(target)
        return Paused(self.name, target, p, stack)


@register
class Kill(FaultKind):
    """SIGKILL a service (any service, the orchestrator included); heal starts it again."""

    name = "kill"
    defaults = {"verify_timeout_s": 2.0}

    def validate(self, params: dict) -> None:
        check_number(self.name, params, "verify_timeout_s", 0, 30)

    def targets(self, stack: Any) -> list[str]:
        return services_of(stack)

    def apply(self, stack: Any, target: str, **params: Any) -> Killed:
        p = self.check_params(params)
        self.check_target(stack, target)
        require_running(stack, self.name, target)
        stack.kill(target, signal="SIGKILL")
        return Killed(self.name, target, p, stack)


@register
class Restart(FaultKind):
    """Graceful restart (SIGTERM, then start); heal confirms it runs and starts what its stop cascaded to."""

    name = "restart"
    defaults = {"stop_timeout_s": 10, "verify_timeout_s": 5.0}

    def validate(self, params: dict) -> None:
        check_number(self.name, params, "stop_timeout_s", 0, 60)
        check_number(self.name, params, "verify_timeout_s", 0, 30)

    def targets(self, stack: Any) -> list[str]:
        return services_of(stack)

    def claims(self, stack: Any, target: str, params: dict) -> list[tuple[str, str]]:
        return [(s, "proc") for s in (target, *downstream(stack, target))]

    def apply(self, stack: Any, target: str, **params: Any) -> Restarted:
        p = self.check_params(params)
        self.check_target(stack, target)
        before = require_running(stack, self.name, target)
        running = [d for d in downstream(stack, target) if state_of(stack, d).get("status") == "running"]
        try:
            stack.restart(target, timeout_s=p["stop_timeout_s"])
        except Exception as exc:
            raise NemesisError(f"restart {target}: {exc!r}") from exc
        fault = Restarted(self.name, target, p, stack)
        fault.applied = {"started_before": before.get("started_at"), "downstream_running": running}
        return fault


@register
class Oom(FaultKind):
    """A service allocates memory until its cgroup limit OOM-kills it: the stack's x-apiary.oom names the
    roles that can and the request that starts it (Apiary's mock worker: PUT /faults {"oom": "now"})."""

    name = "oom"
    defaults = {"verify_timeout_s": 10.0}

    def validate(self, params: dict) -> None:
        check_number(self.name, params, "verify_timeout_s", 0, 10)

    def targets(self, stack: Any) -> list[str]:
        # only containers have the memory limit that makes the hog an OOM kill
        roles = topology_of(stack).oom.get("roles", ())
        return [s for s in services_of(stack) if role(s, stack) in roles] if roles and is_docker(stack) else []

    def apply(self, stack: Any, target: str, **params: Any) -> OomKilled:
        p = self.check_params(params)
        self.check_target(stack, target)
        require_running(stack, self.name, target)
        trigger = topology_of(stack).oom["trigger"]
        method, url = trigger["method"], stack.http_url(target).rstrip("/") + trigger["path"]
        try:
            status = send_trigger(method, url, trigger.get("body"))
        except requests.RequestException as exc:
            st = state_of(stack, target)
            if not st.get("oom_killed"):   # no answer and not dead of it: the fault did not land
                raise NemesisError(f"oom: {method} {url} failed: {exc!r}") from exc
            status = None
        if status is not None and status >= 400:
            raise NemesisError(f"oom: {method} {url} answered {status}")
        return OomKilled(self.name, target, p, stack)
