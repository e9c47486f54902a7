"""The fault protocol: registry and lookup, param and target validation, idempotent heal that reports what it
could not undo, heal_all, the overlap conflict rule and the small parsers the kinds share."""
import pytest

from harness.errors import NemesisError
from harness.nemesis import protocol
from harness.nemesis.kinds_network import counters, leaf, normalize_direction
from harness.nemesis.protocol import (REGISTRY, Active, ActiveFault, FaultKind, conflicts, heal_all, lookup,
                                      parse_target, peers, register)
from tests.nemesis.fakes import FakeStack

KINDS = ("partition", "loss", "pause", "kill", "restart", "oom", "storage-read-only", "storage-corrupt")
A_TARGET = {"partition": "hive-a|worker-a1", "loss": "worker-b1", "pause": "worker-a1", "kill": "worker-a1",
            "restart": "worker-a1", "oom": "worker-a1", "storage-read-only": "orchestrator",
            "storage-corrupt": "orchestrator"}


def test_every_kind_is_registered_under_its_name():
    assert set(KINDS) <= set(REGISTRY)
    for name in KINDS:
        assert lookup(name) is REGISTRY[name] and lookup(name).name == name


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(NemesisError) as err:
        lookup("meteor")
    assert "meteor" in str(err.value) and "partition" in str(err.value) and "storage-corrupt" in str(err.value)


def test_register_rejects_a_kind_without_name():
    class Nameless(FaultKind):
        pass
    with pytest.raises(NemesisError):
        register(Nameless)
    assert "" not in REGISTRY


@pytest.mark.parametrize("name", KINDS)
def test_unknown_param_is_rejected_naming_it(name):
    stack = FakeStack()
    with pytest.raises(NemesisError) as err:
        lookup(name).apply(stack, A_TARGET[name], bogus_knob=1)
    assert "bogus_knob" in str(err.value)
    assert not [c for c in stack.calls if c[0] != "exec"], "nothing may be done before params are checked"


@pytest.mark.parametrize("name,params,bad", [
    ("loss", {"percent": 0}, "percent"), ("loss", {"percent": 101}, "percent"), ("loss", {"percent": True}, "percent"),
    ("loss", {"percent": "50"}, "percent"), ("partition", {"direction": "sideways"}, "direction"),
    ("partition", {"probe_timeout_s": 0}, "probe_timeout_s"), ("oom", {"verify_timeout_s": 11}, "verify_timeout_s"),
    ("kill", {"verify_timeout_s": -1}, "verify_timeout_s"), ("storage-corrupt", {"garbage_bytes": 1}, "garbage_bytes"),
])
def test_invalid_param_values_are_rejected_naming_the_param(name, params, bad):
    with pytest.raises(NemesisError) as err:
        lookup(name).apply(FakeStack(), A_TARGET[name], **params)
    assert repr(bad) in str(err.value)


def test_defaults_are_merged_into_the_active_params():
    fault = lookup("loss").apply(FakeStack(), "worker-b1")
    assert fault.params["percent"] == 50 and fault.params["peer"] is None
    fault.heal()


@pytest.mark.parametrize("name,target", [("kill", "nobody"), ("pause", "hive-a|worker-a1"), ("loss", "orchestrator"),
                                         ("oom", "hive-a"), ("storage-read-only", "hive-a"), ("partition", "hive-a"),
                                         ("partition", "worker-a1|orchestrator")])
def test_targets_a_kind_does_not_accept_are_rejected(name, target):
    with pytest.raises(NemesisError):
        lookup(name).apply(FakeStack(), target)


@pytest.mark.parametrize("target", ["a|b|c", "*|hive-a", "hive-a|hive-a", "hive-a|nobody", "|hive-a", ""])
def test_bad_target_strings(target):
    with pytest.raises(NemesisError):
        parse_target(FakeStack(), target)


def test_target_strings_parse():
    stack = FakeStack()
    assert parse_target(stack, "hive-a") == ("hive-a", None)
    assert parse_target(stack, "orchestrator|hive-a") == ("orchestrator", "hive-a")
    assert parse_target(stack, "hive-a|*") == ("hive-a", "*")


def test_targets_follow_the_topology():
    stack = FakeStack()
    part = lookup("partition").targets(stack)
    assert {"orchestrator|hive-a", "orchestrator|hive-b", "hive-a|worker-a1", "hive-b|worker-b2", "orchestrator|*",
            "worker-b1|*"} <= set(part)
    assert "hive-a|worker-b1" not in part and "worker-a1|hive-a" not in part
    assert lookup("loss").targets(stack) == [s for s in stack.services if s != "orchestrator"]   # NET_ADMIN only
    assert lookup("oom").targets(stack) == ["worker-a1", "worker-a2", "worker-b1", "worker-b2"]
    assert lookup("kill").targets(stack) == stack.services
    assert peers(stack, "hive-a") == ["orchestrator", "hive-b", "worker-a1", "worker-a2"]


def test_a_process_backend_offers_no_container_only_faults():
    class Local(FakeStack):
        backend = "local"
    stack = Local()
    for name in ("partition", "loss", "oom", "storage-read-only", "storage-corrupt"):
        assert lookup(name).targets(stack) == [], name
    assert lookup("kill").targets(stack) == stack.services
    with pytest.raises(NemesisError):
        lookup("partition").apply(stack, "hive-a|worker-a1")


def test_heal_is_idempotent():
    stack = FakeStack()
    fault = lookup("pause").apply(stack, "worker-a1")
    assert isinstance(fault, Active)
    assert fault.heal() == []
    calls = len(stack.calls)
    assert fault.heal() == [] and len(stack.calls) == calls, "a second heal must do nothing"


def test_heal_reports_what_it_could_not_undo_and_retries():
    stack = FakeStack(ignore={"unpause"})
    fault = lookup("pause").apply(stack, "worker-a1")
    assert fault.heal() == ["worker-a1 still paused"]
    assert fault.heal() == ["worker-a1 still paused"], "an incomplete heal tries again"
    stack.ignore.clear()
    assert fault.heal() == [] and stack.inspect("worker-a1")["status"] == "running"


def test_heal_all_heals_newest_first_and_collects_leftovers():
    order = []

    class Fake(ActiveFault):
        def check(self):
            return True, {}

        def undo(self):
            order.append(self.target)
            return [f"{self.target} stuck"] if self.target == "b" else []
    actives = [Fake("k", t, {}, None) for t in ("a", "b", "c")]
    assert heal_all(actives) == ["b stuck"]
    assert order == ["c", "b", "a"]
    assert heal_all(actives) == ["b stuck"] and order[-1] == "b", "only the unhealed one is tried again"


def test_a_heal_that_raises_is_reported_not_raised():
    class Boom(ActiveFault):
        def check(self):
            return True, {}

        def undo(self):
            raise RuntimeError("engine gone")
    assert "engine gone" in Boom("k", "t", {}, None).heal()[0]


def test_a_verify_that_raises_does_not_hold():
    class Broken(ActiveFault):
        def check(self):
            raise RuntimeError("no engine")

        def undo(self):
            return []
    result = Broken("k", "t", {}, None).verify()
    assert result["held"] is False and "no engine" in result["evidence"]["error"]


@pytest.mark.parametrize("a,b,expected", [
    (("w", "proc"), ("w", "proc"), True), (("w", "proc"), ("w", "rule"), True), (("w", "probe"), ("w", "proc"), True),
    (("w", "cut"), ("w", "cut"), True), (("w", "cut"), ("w", "rule"), True), (("w", "rule"), ("w", "rule"), False),
    (("w", "cut"), ("w", "probe"), False), (("w", "proc"), ("x", "proc"), False),
    (("w", "quality"), ("w", "cut"), True), (("w", "quality"), ("w", "rule"), True), (("w", "quality"), ("w", "proc"), True),
    (("w", "quality"), ("w", "quality"), False), (("w", "quality"), ("w", "probe"), False), (("w", "quality"), ("x", "cut"), False),
    (("w", "traffic"), ("w", "block"), True), (("w", "traffic"), ("w", "cut"), False), (("w", "traffic"), ("w", "rule"), False),
    (("w", "block"), ("w", "rule"), False), (("w", "block"), ("w", "cut"), True), (("w", "traffic"), ("x", "block"), False),
])
def test_conflict_rule(a, b, expected):
    assert conflicts(a, b) is expected and conflicts(b, a) is expected


def test_claims_of_network_and_process_kinds():
    stack = FakeStack()
    assert lookup("kill").claims(stack, "hive-a", {}) == [("hive-a", "proc")]
    assert sorted(lookup("partition").claims(stack, "hive-a|worker-a1", {})) == [("hive-a", "probe"), ("worker-a1", "cut")]
    one_way = lookup("partition").claims(stack, "orchestrator|hive-b", {"direction": "a->b"})
    assert sorted(one_way) == [("hive-b", "block"), ("orchestrator", "block")]
    assert lookup("loss").claims(stack, "worker-b1", {}) == [("worker-b1", "rule"), ("worker-b1", "traffic"), ("hive-b", "traffic")]
    assert lookup("latency").claims(stack, "hive-a|worker-a1", {}) == [("worker-a1", "quality"), ("hive-a", "quality")]


def test_a_loss_whose_link_a_one_way_partition_blocks_is_busy():
    """A CI soak's case: with hive-b|worker-b2 b->a held, a loss on worker-b2 (its verify's traffic goes to
    hive-b) saw 2 packets in 3 s and could not prove itself; the player must skip it as busy instead."""
    stack = FakeStack()
    held = lookup("partition").claims(stack, "hive-b|worker-b2", {"direction": "b->a"})
    assert any(conflicts(c, d) for c in lookup("loss").claims(stack, "worker-b2", {"percent": 44}) for d in held)
    assert not any(conflicts(c, d) for c in lookup("loss").claims(stack, "worker-a1", {}) for d in held)
    assert not any(conflicts(c, d) for c in lookup("loss").claims(stack, "worker-b2", {})
                   for d in lookup("loss").claims(stack, "worker-b2", {})), "two losses still stack"


def test_leaf_and_direction():
    assert leaf("orchestrator", "hive-a") == "hive-a" and leaf("worker-a1", "hive-a") == "worker-a1"
    assert leaf("hive-a", "hive-b") == "hive-b"
    assert normalize_direction("orchestrator->hive-b", "orchestrator", "hive-b") == "a->b"
    assert normalize_direction("hive-b->orchestrator", "orchestrator", "hive-b") == "b->a"
    with pytest.raises(NemesisError):
        normalize_direction("hive-a->hive-b", "orchestrator", "hive-b")


def test_counter_parsing():
    listing = """Chain APIARY_NEMESIS (2 references)
    pkts      bytes target     prot opt in     out     source               destination
      27     1508            6    --  eth+   *       0.0.0.0/0            0.0.0.0/0            /* t1-seen */
      13      720 DROP       6    --  eth+   *       0.0.0.0/0            0.0.0.0/0            statistic mode random probability 0.50000000000 /* t1 */
       0        0 DROP       0    --  *      *       10.0.0.2             0.0.0.0/0
"""
    assert counters(listing) == {"t1-seen": 27, "t1": 13}
    assert counters("iptables: No chain/target/match by that name.") == {}


def test_poll_stops_at_its_deadline():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s
    ok, ev = protocol.poll(lambda: (False, now[0]), 1.0, sleep=sleep, clock=lambda: now[0])
    assert ok is False and ev >= 1.0 and max(slept) <= 0.2
    ok, ev = protocol.poll(lambda: (True, "now"), 1.0, sleep=sleep, clock=lambda: now[0])
    assert (ok, ev) == (True, "now")
