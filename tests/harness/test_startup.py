"""Ordered start: depends_on levels from the compose file, each level gated on health, failures named."""
import threading
import time

import pytest

from apiary_suite.cluster import COMPOSE_FILE
from harness.errors import EnvironmentSetupError
from harness.startup import dependency_levels, start_in_order


def test_levels_of_the_integration_stack_follow_depends_on():
    assert dependency_levels(COMPOSE_FILE) == [["orchestrator"], ["hive-a", "hive-b"],
                                              ["worker-a1", "worker-a2", "worker-b1", "worker-b2"]]


@pytest.mark.parametrize("services, error", [
    ({"a": {"depends_on": ["b"]}, "b": {"depends_on": {"a": {"condition": "service_healthy"}}}}, "cycle among"),
    ({"a": {"depends_on": ["ghost"]}}, r"unknown services \[.ghost.\]"),
])
def test_bad_dependency_graphs_are_refused_with_the_reason(tmp_path, services, error):
    import yaml
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump({"services": services}))
    with pytest.raises(ValueError, match=error) as exc:
        dependency_levels(path)
    assert str(path) in str(exc.value)


def test_a_level_starts_only_when_every_service_before_it_is_healthy():
    """Starts are recorded with the set of services healthy at that moment: never a dependant before its dependency."""
    healthy_at: dict[str, float] = {}
    started: list[tuple[str, set]] = []
    lock = threading.Lock()

    def start(s):
        with lock:
            started.append((s, {h for h, t in healthy_at.items() if t <= time.monotonic()}))
            healthy_at[s] = time.monotonic() + 0.1   # healthy 100 ms after its start

    def healthy(s):
        return s in healthy_at and time.monotonic() >= healthy_at[s]

    timings = start_in_order([["o"], ["h1", "h2"], ["w1", "w2"]], start, healthy, 10)
    seen = dict(started)
    assert seen["o"] == set() and seen["h1"] >= {"o"} and seen["w2"] >= {"o", "h1", "h2"}
    assert [t["services"] for t in timings] == [["o"], ["h1", "h2"], ["w1", "w2"]]
    assert all(t["healthy_s"] >= 0.09 for t in timings)


def test_a_service_that_never_gets_healthy_is_named_at_the_deadline():
    def healthy(s):
        if s == "h2":
            raise ConnectionRefusedError("not listening")   # probe errors count as "not yet"
        return True
    start = time.monotonic()
    with pytest.raises(EnvironmentSetupError) as exc:
        start_in_order([["o"], ["h1", "h2"], ["w"]], lambda s: None, healthy, 0.5, lambda bad: f"state of {bad}")
    assert time.monotonic() - start < 3
    assert "h2" in exc.value.detail and "h1" not in exc.value.detail.split("\n")[0]
    assert "state of ['h2']" in exc.value.detail
