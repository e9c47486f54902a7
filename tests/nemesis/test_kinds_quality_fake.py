"""Every link-quality kind against a fake stack whose links are real loopback TCP (tests/nemesis/fake_links.py),
with the proxies on the networks' host end (probes.enabled False: via "host"): apply moves the service's
own connection onto the proxy, verify holds, heal leaves no rule, no proxy, no steering, and the service
connected directly again. And each check can fail: a toxic that does nothing, a toxic gone, a DNAT rule
that does not take effect, an `ss -K` that kills nothing."""
import json

import pytest

from harness.errors import NemesisError
from harness.nemesis import probes
from harness.nemesis.protocol import lookup, poll
from harness.nemesis.steering import STEERED, server
from tests.nemesis.fake_links import FakeStack

# (kind, target, params): small params, a mix of orchestrator|hive-x and hive-x|worker-xy links
CASES = [
    ("latency", "orchestrator|hive-a", {"latency": 30}),
    ("bandwidth", "hive-b|worker-b1", {"rate": 200}),
    ("slicer", "orchestrator|hive-b", {"average_size": 128, "size_variation": 0, "delay": 2000}),
    ("slow_close", "hive-a|worker-a2", {"delay": 200}),
    ("limit_data", "orchestrator|hive-a", {"bytes": 4096}),
    ("reset_peer", "hive-a|worker-a1", {"timeout": 100}),
    ("blackhole", "hive-b|worker-b2", {"timeout": 0}),
]
IDS = [c[0] for c in CASES]
QUICK = 0.5        # verify/settle deadline of the cases that cannot settle (they poll until it passes)
BACK_S = 5.0       # how long a healed service may take to be connected directly again


@pytest.fixture
def make_stack(monkeypatch):
    """FakeStacks with the proxies forced onto the host end; whatever a test left steered is unsteered."""
    monkeypatch.setattr(probes, "enabled", False)
    made: list[FakeStack] = []

    def make(**kw) -> FakeStack:
        made.append(FakeStack(**kw))
        return made[-1]
    try:
        yield make
    finally:
        for stack in made:
            try:
                for key, steering in list(STEERED.items()):
                    if key[0] == stack.project:
                        steering.unsteer()
                srv = server()
                for name in [n for n in srv.proxies if n.startswith(stack.project + ":")]:
                    srv.call(srv.delete(name))
            finally:
                stack.close()
        for stack in made:
            assert stack.errors == [], stack.errors


def assert_healed(stack: FakeStack, fault) -> None:
    """No rule left in src, no proxy, nothing steered, src's own connection direct to dst again."""
    s = fault.steering
    assert stack.rules_of(s.src) == []
    assert not [n for n in server().proxies if n.startswith(s.name)]
    assert not [k for k in STEERED if k[0] == stack.project]
    link = stack.links[s.src]
    back, peer = poll(lambda: (stack.peer_of(s.src) == (s.dst_ip, s.port), stack.peer_of(s.src)), BACK_S)
    assert back, (peer, link.history[-5:])


def neuter(fault) -> None:
    """Swap each of the fault's toxics for one of the same name and stream that does nothing."""
    names = [t["name"] for t in fault.toxics]
    assert fault.steering.remove_toxics(names) == []
    fault.steering.add_toxics([{"name": t["name"], "type": "latency", "stream": t["stream"],
                                "attributes": {"latency": 0}} for t in fault.toxics])


@pytest.mark.parametrize("kind,target,params", CASES, ids=IDS)
def test_apply_verify_heal(make_stack, kind, target, params):
    stack = make_stack()
    fault = lookup(kind).apply(stack, target, **params)
    try:
        s = fault.steering
        assert s.via == "host" and s.bind_ip in stack.gateways.values() and s.proxy.listen.startswith(s.bind_ip + ":")
        assert (s.src, s.src_ip, s.dst_ip, s.port) == (stack.links[s.src].service, stack.links[s.src].src_ip,
                                                       stack.links[s.src].dst_ip, stack.links[s.src].port)
        assert fault.applied["settled"] is True and fault.applied["baseline"]["n"] == 5
        assert [k for k in stack.kills if k["service"] == s.src] == [
            {"service": s.src, "dst": (s.dst_ip, s.port), "killed": 1, "rst_dropped": True}]
        assert any(s.tag in r and "DNAT" in r for r in stack.rules_of(s.src))
        assert not any("RST" in r for r in stack.rules_of(s.src)), "the RST rule goes once it settled"
        proxy_addr = s.proxy.listen.rsplit(":", 1)
        assert (proxy_addr[0], int(proxy_addr[1])) in stack.links[s.src].history
        result = fault.verify()
        json.dumps(result)
        assert result["held"] is True, result
    finally:
        left = fault.heal()
    assert left == []
    assert fault.heal() == []
    assert isinstance(fault.steering.evidence["released"], list), fault.steering.evidence   # the release ran
    assert_healed(stack, fault)


@pytest.mark.parametrize("kind,target,params", CASES, ids=IDS)
def test_a_toxic_that_does_nothing_fails_the_probe(make_stack, kind, target, params):
    """Same toxic names on both proxies, the service on the proxy: only the kind's own probe can tell."""
    stack = make_stack()
    fault = lookup(kind).apply(stack, target, **params)
    try:
        neuter(fault)
        result = fault.verify()
        assert result["held"] is False, result
        ev = result["evidence"]
        assert ev["service_links"] and {t["name"] for t in fault.toxics} <= set(ev["toxics_on_proxy"]), ev
        assert "probe" in ev, ev
    finally:
        left = fault.heal()
    assert left == []
    assert_healed(stack, fault)


def test_latency_does_not_hold_once_its_toxic_is_removed_behind_its_back(make_stack):
    stack = make_stack()
    fault = lookup("latency").apply(stack, "orchestrator|hive-b", latency=30)
    try:
        assert fault.verify()["held"] is True
        assert fault.steering.remove_toxics([t["name"] for t in fault.toxics]) == []
        result = fault.verify()
        assert result["held"] is False and result["evidence"]["why"] == "toxics missing on the proxy", result
    finally:
        left = fault.heal()
    assert left == []
    assert_healed(stack, fault)


@pytest.mark.parametrize("ignored", ["dnat", "kill"])
def test_a_link_that_never_moves_onto_the_proxy_does_not_hold(make_stack, ignored):
    """The DNAT rule routes nothing, or `ss -K` kills nothing: the service stays direct, nothing settles;
    apply reports settled False (it does not raise) and verify does not hold."""
    stack = make_stack(ignore={ignored})
    fault = lookup("latency").apply(stack, "hive-a|worker-a1", latency=30, verify_timeout_s=QUICK)
    try:
        s = fault.steering
        assert fault.applied["settled"] is False and fault.applied["links"] == []
        result = fault.verify()
        assert result["held"] is False, result
        assert result["evidence"]["why"] == "worker-a1 does not connect through the proxy", result
        assert stack.peer_of("worker-a1") == (s.dst_ip, s.port)
    finally:
        left = fault.heal()
    assert left == []
    assert_healed(stack, fault)


def test_a_failing_rules_script_rolls_back(make_stack, monkeypatch):
    """The steering script exiting 1 after its rules went in makes apply raise, with nothing left behind."""
    stack = make_stack()
    real = stack._script
    monkeypatch.setattr(stack, "_script", lambda service, script: real(service, script) or int("ss -K" in script))
    with pytest.raises(NemesisError) as err:
        lookup("latency").apply(stack, "hive-b|worker-b1", latency=30)
    assert "exited 1" in str(err.value)
    assert stack.kills and stack.kills[-1]["killed"] == 1, "the script ran to its end before it failed"
    assert stack.rules_of("worker-b1") == []
    assert not [n for n in server().proxies if n.startswith(stack.project + ":")]
    assert not [k for k in STEERED if k[0] == stack.project]
    link = stack.links["worker-b1"]
    back, peer = poll(lambda: (link.peer == (link.dst_ip, link.port), link.peer), BACK_S)
    assert back, (peer, link.history[-5:])


def test_the_fake_refuses_scripts_it_does_not_know(make_stack):
    stack = make_stack()
    for script in ("iptables -w -F", "iptables -w -A APIARY_NEMESIS -p udp -j REJECT", "ss -K dst 1.2.3.4"):
        with pytest.raises(AssertionError):
            stack.exec("hive-a", ["sh", "-c", script], check=False)
    stack.errors.clear()
