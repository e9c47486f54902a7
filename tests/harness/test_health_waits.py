"""The health waits shared by both backends: /health gating (wait_healthy) and the backend's own flag
(wait_reported_healthy), against a scripted backend: what they wait for, and what they name on failure."""
import pytest

from apiary_suite.stackops import StackOps
from harness.errors import EnvironmentSetupError

SERVICES = ["orchestrator", "hive-a", "worker-a1"]


class ScriptedStack(StackOps):
    """A backend whose probe and inspect answers follow a script, one entry per call (the last repeats)."""

    def __init__(self, probes=(), flags=()):
        self.services = SERVICES
        self.probes, self.flags = list(probes), list(flags)
        self.probe_calls = 0
        self.diagnosed: list[str] = []

    def probe_health(self):
        self.probe_calls += 1
        return self.probes.pop(0) if len(self.probes) > 1 else self.probes[0]

    def inspect(self, service):
        health = self.flags[0] if service == "worker-a1" else "healthy"
        return {"status": "running", "health": health, "exit_code": None}

    def next_flags(self):
        if len(self.flags) > 1:
            self.flags.pop(0)

    def diagnose(self, headline, services=None):
        self.diagnosed.append(headline)
        return f"{headline} [diagnosis of {', '.join(services or [])}]"


def test_wait_healthy_returns_once_every_service_answers():
    stack = ScriptedStack(probes=[([], ["worker-a1"]), ([], ["worker-a1"]), ([], [])])
    stack.wait_healthy(5)
    assert stack.probe_calls == 3


def test_wait_healthy_names_the_service_that_never_answers():
    stack = ScriptedStack(probes=[([], ["hive-a"])])
    with pytest.raises(EnvironmentSetupError) as err:
        stack.wait_healthy(0.3)
    assert err.value.what == "unhealthy service"
    assert "not healthy within 0s: hive-a" in str(err.value) and "diagnosis of hive-a" in str(err.value)


def test_wait_healthy_stops_at_once_when_a_service_exited():
    stack = ScriptedStack(probes=[(["worker-a1"], [])])
    with pytest.raises(EnvironmentSetupError, match="worker-a1 exited"):
        stack.wait_healthy(30)
    assert stack.probe_calls == 1


def test_wait_reported_healthy_waits_for_the_flag():
    stack = ScriptedStack(flags=["starting", "starting", "healthy"])
    original = stack.inspect

    def inspect(service):
        if service == "orchestrator":
            stack.next_flags()
        return original(service)
    stack.inspect = inspect
    stack.wait_reported_healthy(5)
    assert stack.flags == ["healthy"]


def test_wait_reported_healthy_names_the_service_and_its_flag():
    stack = ScriptedStack(flags=["unhealthy"])
    with pytest.raises(AssertionError) as err:
        stack.wait_reported_healthy(0.3)
    assert "worker-a1" in str(err.value) and "'health': 'unhealthy'" in str(err.value)
    assert "orchestrator" not in str(err.value)
