"""Every fault kind against the fake stack: apply, verify held, heal, verify no longer held, stack clean;
and verify does NOT hold when the fake ignores the fault (the check can fail)."""
import json

import pytest

from harness.errors import NemesisError
from harness.nemesis import kinds_process
from harness.nemesis.protocol import lookup
from tests.nemesis.fakes import SQLITE, FakeStack

QUICK = 0.2   # verify deadline for cases where the fault cannot take effect (they poll until it passes)

# (kind, target, params, what the fake ignores so that the fault does not take effect)
CASES = [
    ("partition", "hive-a|worker-a1", {}, "disconnect"),
    ("partition", "orchestrator|hive-a", {}, "disconnect"),
    ("partition", "hive-a|*", {}, "disconnect"),
    ("partition", "hive-a|hive-b", {}, "iptables"),
    ("partition", "orchestrator|hive-b", {"direction": "a->b"}, "iptables"),
    ("partition", "orchestrator|hive-b", {"direction": "hive-b->orchestrator"}, "iptables"),
    ("partition", "worker-b1|*", {"direction": "a->b"}, "iptables"),
    ("loss", "worker-b1", {"percent": 50}, "iptables"),
    ("loss", "worker-b1", {"percent": 50}, "traffic"),
    ("loss", "hive-a", {"percent": 10, "peer": "worker-a2"}, "iptables"),
    ("pause", "hive-b", {}, "pause"),
    ("kill", "orchestrator", {}, "kill"),
    ("kill", "worker-b2", {}, "kill"),
    ("restart", "hive-a", {}, "restart"),
    ("oom", "worker-a1", {}, "oom"),
    ("storage-read-only", "orchestrator", {}, "chmod"),
    ("storage-corrupt", "orchestrator", {}, "corrupt"),
    ("storage-corrupt", "orchestrator", {}, "recover"),
]
EVENT_KINDS = ("restart", "storage-corrupt")   # what they prove happened stays true after heal
IDS = [f"{k}-{t}-{i}" for k, t, p, i in CASES]


@pytest.fixture(autouse=True)
def fake_http(monkeypatch):
    """The oom kind's PUT /faults goes to the fake stack of the test."""
    stacks = []
    monkeypatch.setattr(kinds_process, "send_trigger", lambda method, url, body=None, timeout_s=5.0: stacks[-1].put_faults(url, body))
    return stacks


def make(fake_http, **kw):
    stack = FakeStack(**kw)
    fake_http.append(stack)
    return stack


def assert_clean(stack):
    """Every service running, on all its networks, no iptables rule left, /data writable."""
    for s in stack.services:
        assert stack.state[s]["status"] == "running", (s, stack.state[s])
        assert stack.rules[s] == [], (s, stack.rules[s])
    assert stack.attached == FakeStack().attached
    assert stack.writable


@pytest.mark.parametrize("kind,target,params,ignored", CASES, ids=IDS)
def test_apply_verify_heal(fake_http, kind, target, params, ignored):
    stack = make(fake_http)
    fault = lookup(kind).apply(stack, target, **params)
    assert (fault.kind, fault.target) == (kind, target)
    result = fault.verify()
    json.dumps(result)
    assert result["held"] is True, result
    assert fault.heal() == []
    assert fault.heal() == []
    assert_clean(stack)
    if "verify_timeout_s" in fault.params:
        fault.params["verify_timeout_s"] = QUICK   # it polls until the deadline when it does not hold
    after = fault.verify()
    assert after["held"] is (kind in EVENT_KINDS), after


@pytest.mark.parametrize("kind,target,params,ignored", CASES, ids=IDS)
def test_verify_fails_when_the_fault_did_not_take_effect(fake_http, kind, target, params, ignored):
    stack = make(fake_http, ignore={ignored})
    quick = {"verify_timeout_s": QUICK} if "verify_timeout_s" in lookup(kind).defaults else {}
    fault = lookup(kind).apply(stack, target, **params, **quick)
    result = fault.verify()
    assert result["held"] is False, result
    fault.heal()


def test_both_ways_partition_disconnects_the_leaf_and_probes_from_the_other_side(fake_http):
    stack = make(fake_http)
    fault = lookup("partition").apply(stack, "orchestrator|hive-a")
    assert ("disconnect", "hive-a", "control") in stack.calls
    ev = fault.verify()["evidence"]
    assert ev["still_attached"] == [] and ev["membership"]["hive-a"] == ["hive-a-net"]
    assert [(p["from"], p["port"], p["result"]) for p in ev["probes"]] == [("orchestrator", 5556, "timeout")]
    fault.heal()
    assert ("connect", "hive-a", "control") in stack.calls


def test_both_ways_partition_of_two_equal_peers_cuts_only_their_link(fake_http):
    """hive-a|hive-b: no leaf to disconnect (one rank), so a DROP each way between the two; both stay on every
    network and reach everyone else."""
    stack = make(fake_http)
    a_ip, b_ip = stack.ips[("hive-a", "control")], stack.ips[("hive-b", "control")]
    fault = lookup("partition").apply(stack, "hive-a|hive-b")
    assert not [c for c in stack.calls if c[0] == "disconnect"]
    assert [r.split(" -m")[0] for r in stack.rules["hive-b"]] == [f"-s {a_ip}"]   # each INPUT drops the other
    assert [r.split(" -m")[0] for r in stack.rules["hive-a"]] == [f"-s {b_ip}"]
    assert stack.probe("hive-b", stack.ips[("orchestrator", "control")]) == "connected"
    assert stack.probe("orchestrator", b_ip) == "connected"
    ev = fault.verify()
    assert ev["held"] is True, ev
    assert sorted(lookup("partition").claims(stack, "hive-a|hive-b", {})) == [("hive-a", "block"), ("hive-b", "block")]
    fault.heal()
    assert_clean(stack)


def test_partition_against_all_cuts_every_shared_network(fake_http):
    stack = make(fake_http)
    fault = lookup("partition").apply(stack, "hive-a|*")
    assert sorted(c[2] for c in stack.calls if c[0] == "disconnect") == ["control", "hive-a-net"]
    assert {p["from"] for p in fault.verify()["evidence"]["probes"]} == {"orchestrator", "worker-a1"}
    fault.heal()


def test_one_way_rule_goes_where_net_admin_is(fake_http):
    stack = make(fake_http)
    orch_ip = stack.ips[("orchestrator", "control")]
    into_hive = lookup("partition").apply(stack, "orchestrator|hive-b", direction="a->b")
    assert [r.split(" -m")[0] for r in stack.rules["hive-b"]] == [f"-s {orch_ip}"]   # hive-b INPUT drops orchestrator
    assert stack.probe("hive-b", orch_ip) == "connected", "the other direction still flows"
    into_hive.heal()
    out_of_hive = lookup("partition").apply(stack, "orchestrator|hive-b", direction="b->a")
    assert [r.split(" -m")[0] for r in stack.rules["hive-b"]] == [f"-d {orch_ip}"]   # hive-b OUTPUT
    assert stack.rules["orchestrator"] == [], "the orchestrator has no NET_ADMIN"
    out_of_hive.heal()
    assert_clean(stack)


def test_overlapping_rule_faults_in_one_container_remove_only_their_own_rules(fake_http):
    stack = make(fake_http)
    loss = lookup("loss").apply(stack, "hive-b", percent=30)
    drop = lookup("partition").apply(stack, "orchestrator|hive-b", direction="a->b")
    assert len(stack.rules["hive-b"]) == 3
    assert loss.heal() == []
    assert len(stack.rules["hive-b"]) == 1 and drop.verify()["held"] is True
    assert drop.heal() == [] and stack.rules["hive-b"] == []


def test_loss_evidence_is_the_drop_counter(fake_http):
    stack = make(fake_http)
    ev = lookup("loss").apply(stack, "worker-b1", percent=50).verify()["evidence"]
    assert ev["dropped"] == 5 and ev["seen"] == 10 and ev["reads"] == 2   # nothing crossed before traffic was made


def test_loss_peer_must_be_a_peer(fake_http):
    with pytest.raises(NemesisError) as err:
        lookup("loss").apply(make(fake_http), "worker-b1", peer="worker-a1")
    assert "'peer'" in str(err.value)


def test_rules_of_a_container_that_stopped_are_gone_with_it(fake_http):
    stack = make(fake_http)
    fault = lookup("loss").apply(stack, "worker-b1")
    stack.kill("worker-b1")
    assert fault.heal() == []


def test_rules_in_a_paused_container_are_reported_unhealed(fake_http):
    stack = make(fake_http)
    fault = lookup("loss").apply(stack, "worker-b1")
    stack.pause("worker-b1")
    left = fault.heal()
    assert left and "worker-b1" in left[0]
    stack.unpause("worker-b1")
    assert fault.heal() == [] and stack.rules["worker-b1"] == []


def test_a_probe_refused_means_packets_flow(fake_http, monkeypatch):
    stack = make(fake_http)
    fault = lookup("partition").apply(stack, "orchestrator|hive-b", direction="a->b")
    monkeypatch.setattr(stack, "probe", lambda src, ip: "refused")
    assert fault.verify()["held"] is False
    fault.heal()


def test_a_partition_whose_prober_is_paused_does_not_hold(fake_http):
    stack = make(fake_http)
    fault = lookup("partition").apply(stack, "hive-a|worker-a1")
    stack.pause("hive-a")
    ev = fault.verify()
    assert ev["held"] is False and ev["evidence"]["probes"][0]["result"] == "error"
    stack.unpause("hive-a")
    fault.heal()


def test_a_failed_disconnect_rolls_back_and_raises(fake_http):
    stack = make(fake_http)
    real = stack.disconnect

    def second_fails(service, network):
        if network == "hive-a-net":
            raise RuntimeError("engine said no")
        real(service, network)
    stack.disconnect = second_fails
    with pytest.raises(NemesisError):
        lookup("partition").apply(stack, "hive-a|*")
    assert stack.attached == FakeStack().attached


@pytest.mark.parametrize("kind", ["pause", "kill", "restart", "oom"])
def test_process_faults_need_a_running_target(fake_http, kind):
    stack = make(fake_http)
    stack.kill("worker-a1")
    with pytest.raises(NemesisError) as err:
        lookup(kind).apply(stack, "worker-a1")
    assert "exited" in str(err.value)


def test_kill_heal_starts_it_and_reports_a_start_that_did_not_happen(fake_http):
    stack = make(fake_http, ignore={"start"})
    fault = lookup("kill").apply(stack, "orchestrator")
    assert fault.verify()["evidence"]["exit_code"] == 137
    assert fault.heal() == ["orchestrator is exited after start"]


def test_restart_of_a_hive_heals_the_workers_its_shutdown_took_down(fake_http):
    stack = make(fake_http)
    fault = lookup("restart").apply(stack, "hive-a")
    ev = fault.verify()["evidence"]
    assert ev["cascaded"] == ["worker-a1", "worker-a2"] and ev["started_at"] != ev["started_before"]
    assert fault.heal() == []
    assert_clean(stack)
    assert lookup("restart").claims(stack, "hive-a", {}) == [(s, "proc") for s in ("hive-a", "worker-a1", "worker-a2")]


def test_oom_evidence_and_heal(fake_http):
    stack = make(fake_http)
    fault = lookup("oom").apply(stack, "worker-a1")
    assert ("put_faults", "worker-a1", {"oom": "now"}) in stack.calls
    ev = fault.verify()["evidence"]
    assert ev["exit_code"] == 137 and ev["oom_killed"] is True
    assert fault.heal() == [] and stack.state["worker-a1"]["status"] == "running"


def test_oom_that_the_worker_refuses_is_an_apply_error(fake_http, monkeypatch):
    monkeypatch.setattr(kinds_process, "send_trigger", lambda method, url, body=None, timeout_s=5.0: 400)
    with pytest.raises(NemesisError) as err:
        lookup("oom").apply(make(fake_http), "worker-a1")
    assert "400" in str(err.value)


def test_read_only_probe_runs_as_the_service_user(fake_http):
    stack = make(fake_http)
    fault = lookup("storage-read-only").apply(stack, "orchestrator")
    fault.verify()
    users = [c[3] for c in stack.calls if c[0] == "exec" and "touch" in c[2][-1]]
    assert users == ["10001"]
    fault.heal()


def test_corrupt_evidence_comes_from_the_volume_and_the_restarted_orchestrator(fake_http):
    stack = make(fake_http)
    fault = lookup("storage-corrupt").apply(stack, "orchestrator")
    assert [c[0] for c in stack.calls] == ["stop", "volume_shell", "volume_shell", "start"]
    ev = fault.verify()["evidence"]
    assert ev["header_is_the_format"] is False and ev["header_hex"] == bytes(range(200, 216)).hex()
    assert ev["header_before_hex"] == SQLITE.hex() and ev["header_changed"] is True
    assert ev["moved_aside"] and ev["corrupt_event_logged"] is True
    assert stack.header == SQLITE, "the fake orchestrator rebuilt the registry"
    assert fault.heal() == []
