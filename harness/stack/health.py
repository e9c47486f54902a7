"""Readiness of a stack's services, shared by every backend: one GET per service against its x-apiary
health check, waits with a deadline that name the services still sick, with their state and last logs."""
from __future__ import annotations

import time

import requests

from harness.errors import EnvironmentSetupError, NemesisError
from harness.stack.reset import send_reset
from harness.wait import scaled, wait_until


def answers_health(base_url: str, timeout_s: float = 0.5, path: str = "/health") -> bool:
    """GET <base_url><path> answers 200 (False when it answers otherwise or not at all)."""
    try:
        return requests.get(base_url + path, timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False


class HealthWaits:
    """wait_healthy / wait_reported_healthy over a backend's probe_health, diagnose, inspect and services."""

    def reset(self, timeout_s: float = 30) -> float:
        """Known state between scenarios: heal (the backend's), every service healthy, clear_state()
        (retried for 5 s while it gets no answer), then settle(); deadlines scaled; returns seconds."""
        start = time.monotonic()
        self.heal()
        self.wait_healthy(timeout_s, scale=True)
        wait_until(lambda: self.clear_state() or True, 5, 0.05, "the stack's reset request answered",
                   swallow=(requests.RequestException,))
        self.settle(timeout_s)
        return time.monotonic() - start

    def clear_state(self) -> None:
        """The stack's own state put back: the declared x-apiary.reset (nothing when none is declared)."""
        send_reset(self)

    def settle(self, timeout_s: float) -> None:
        """What must be ready after the reset beyond the health checks (nothing, unless a stack says more)."""

    def wait_healthy(self, timeout_s: float = 30, scale: bool = False) -> None:
        """Every service alive and answering its health check before the deadline, else
        EnvironmentSetupError naming the services with their state and last log lines."""
        def sick() -> list[str]:
            dead, down = self.probe_health()
            if dead:
                raise EnvironmentSetupError("unhealthy service", self.diagnose(f"{', '.join(dead)} exited", dead))
            return down
        try:
            wait_until(lambda: not sick(), timeout_s, 0.05, "services healthy", scale=scale, swallow=(NemesisError,))
        except AssertionError:
            if bad := sick():
                raise EnvironmentSetupError("unhealthy service", self.diagnose(
                    f"not healthy within {timeout_s:.0f}s: {', '.join(bad)}", bad)) from None

    def wait_reported_healthy(self, timeout_s: float) -> None:
        """Every service reported running and healthy by its backend's inspect() (for containers:
        Docker's HEALTHCHECK flag) before the deadline, else AssertionError with the others' states."""
        def sick() -> dict:
            states = {s: self.inspect(s) for s in self.services}
            return {s: {k: st.get(k) for k in ("status", "health", "exit_code")} for s, st in states.items()
                    if st.get("status") != "running" or st.get("health") != "healthy"}
        try:
            wait_until(lambda: not sick(), timeout_s, 0.1, "every service running and healthy", max_interval_s=0.5)
        except AssertionError:
            if bad := sick():
                raise AssertionError(f"not running+healthy within {scaled(timeout_s):.1f}s: {bad}") from None
