"""The fault kinds against the real compose stack: apply -> verify held -> heal -> verify not held -> stack
ready again, for the cheap kinds; each kind's apply+verify time is printed (run with -s to see it).
One stack for the module, torn down (and swept by run label) in a finally; skipped without an engine."""
import secrets
import statistics
import time

import pytest

from harness.nemesis.protocol import lookup
from harness.sweep import leftovers
from tests.harness.conftest import docker_engine, stack_images  # noqa: F401 - fixtures

pytestmark = [pytest.mark.docker, pytest.mark.slow]

QUICK = 0.3          # verify deadline once the fault is healed (it polls until then when it does not hold)
TIMINGS: dict[str, list[tuple[float, float]]] = {}


@pytest.fixture(scope="module")
def stack(docker_engine, stack_images):  # noqa: F811 - the imported fixtures
    """A fresh stack for this module, every worker ready; removed at the end whatever happened."""
    from apiary_suite.cluster import Cluster
    run_id = f"nemkinds-{secrets.token_hex(3)}"
    cluster = Cluster(run_id)
    try:
        cluster.up(180)
        cluster.wait_ready(60)
        yield cluster
    finally:
        cluster.down()
        print_timings()
    assert leftovers(docker_engine, run_id) == {"containers": [], "networks": [], "volumes": []}


def print_timings() -> None:
    print("\napply+verify per kind (ms): n, p50, max  [apply p50 / verify p50]")
    for label, rows in TIMINGS.items():
        total = [a + v for a, v in rows]
        print(f"  {label:42} n={len(rows)} p50={statistics.median(total):7.1f} max={max(total):7.1f}  "
              f"[{statistics.median(a for a, _ in rows):.1f} / {statistics.median(v for _, v in rows):.1f}]")


def cycle(stack, kind: str, target: str, params: dict | None = None, still_holds_after_heal: bool = False,
          label: str | None = None) -> dict:
    """apply, verify (must hold), heal (nothing left), verify again (must not hold), stack ready again."""
    fault = None
    try:
        t0 = time.monotonic()
        fault = lookup(kind).apply(stack, target, **(params or {}))
        t1 = time.monotonic()
        verdict = fault.verify()
        t2 = time.monotonic()
        label = label or f"{kind} {target} {params or ''}"
        TIMINGS.setdefault(label, []).append(((t1 - t0) * 1000, (t2 - t1) * 1000))
        print(f"\n{label}: apply {1000 * (t1 - t0):.0f} ms, verify {1000 * (t2 - t1):.0f} ms")
        assert verdict["held"] is True, verdict
        assert fault.heal() == []
        if "verify_timeout_s" in fault.params:
            fault.params["verify_timeout_s"] = QUICK
        after = fault.verify()
        assert after["held"] is still_holds_after_heal, after
        return verdict
    finally:
        if fault is not None:
            fault.heal()
        settle(stack)


def settle(stack) -> None:
    """The stack healthy and ready again; if the kind's heal left it broken, the backend's heal repairs it
    for the next test and this test fails with what was wrong."""
    try:
        stack.wait_healthy(60)
        stack.wait_ready(60)
    except Exception:
        stack.heal()
        stack.wait_healthy(60)
        stack.wait_ready(60)
        raise


def test_partition_both_ways_hive_a_worker_a1(stack):
    for _ in range(5):
        ev = cycle(stack, "partition", "hive-a|worker-a1")["evidence"]
    assert ev["still_attached"] == [] and "hive-a-net" not in ev["membership"]["worker-a1"]
    assert [p["result"] for p in ev["probes"]] == ["timeout"]


def test_partition_one_way_orchestrator_to_hive_b(stack):
    for _ in range(5):
        ev = cycle(stack, "partition", "orchestrator|hive-b", {"direction": "a->b"})["evidence"]
    assert list(ev["rules"]) == ["hive-b"], "the rule lives in hive-b (the orchestrator has no NET_ADMIN)"


def test_loss_50_percent_on_worker_b1(stack):
    for _ in range(5):
        ev = cycle(stack, "loss", "worker-b1", {"percent": 50})["evidence"]
    assert ev["dropped"] > 0 and ev["seen"] >= ev["dropped"]


def test_pause_hive_b(stack):
    assert cycle(stack, "pause", "hive-b")["evidence"]["status"] == "paused"


def test_kill_the_orchestrator(stack):
    ev = cycle(stack, "kill", "orchestrator")["evidence"]
    assert ev["exit_code"] == 137
    assert stack.inspect("orchestrator")["status"] == "running"


def test_kill_a_worker(stack):
    assert cycle(stack, "kill", "worker-a2")["evidence"]["exit_code"] == 137


def test_graceful_restart_of_a_hive(stack):
    ev = cycle(stack, "restart", "hive-a", still_holds_after_heal=True)["evidence"]
    assert ev["started_at"] != ev["started_before"] and ev["status"] == "running"
    print(f"restart hive-a: its graceful stop took down {ev['cascaded'] or 'nothing'}; heal started them")


def test_oom_of_a_worker(stack):
    ev = cycle(stack, "oom", "worker-b2")["evidence"]
    assert ev["exit_code"] == 137 and ev["oom_killed"] is True


def test_read_only_storage(stack):
    assert cycle(stack, "storage-read-only", "orchestrator")["evidence"]["write_probe_exit"] not in (0, None)


def test_corrupt_storage(stack):
    ev = cycle(stack, "storage-corrupt", "orchestrator", still_holds_after_heal=True)["evidence"]
    assert ev["header_is_the_format"] is False and ev["header_changed"] and (ev["moved_aside"] or ev["corrupt_event_logged"])
