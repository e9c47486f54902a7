"""FaultPlayer on a fake clock: apply/verify/heal at the scheduled times, overlap and the "target busy" skip
rule, the nemesis ops in the history, failed applies, unheld verifies, stop and deadline, heal_all."""
import threading

import pytest

from harness.errors import NemesisError
from harness.history import History, pairs
from harness.nemesis import kinds_process
from harness.nemesis.player import FaultPlayer
from harness.nemesis.protocol import REGISTRY, ActiveFault, FaultKind
from tests.nemesis.fakes import FakeStack


class FakeClock:
    """monotonic() and sleep() that only move when slept; every sleep is recorded."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []
        self.on_sleep = None

    def clock(self):
        return self.now

    def sleep(self, s):
        assert s >= 0
        self.sleeps.append(s)
        self.now += s
        if self.on_sleep:
            self.on_sleep(self.now)


class Rec(ActiveFault):
    def check(self):
        self.stack.log.append(("verify", self.target, self.stack.clock.now))
        return self.params["hold"], {"target": self.target}

    def undo(self):
        self.stack.log.append(("heal", self.target, self.stack.clock.now))
        if self.params["stuck"] > 0:
            self.params["stuck"] -= 1
            return [f"{self.target} stuck"]
        return []


class RecKind(FaultKind):
    """A fault that only records; `lane` is its claim on the target, `cost_s` how long apply takes."""

    name = "rec"
    defaults = {"lane": "proc", "fail": False, "hold": True, "stuck": 0, "cost_s": 0.0}

    def targets(self, stack):
        return ["a", "b", "c"]

    def claims(self, stack, target, params):
        return [(target, params.get("lane", "proc"))]

    def apply(self, stack, target, **params):
        p = self.check_params(params)
        self.check_target(stack, target)
        stack.clock.now += p["cost_s"]
        if p["fail"]:
            raise NemesisError("could not apply")
        stack.log.append(("apply", target, stack.clock.now))
        return Rec(self.name, target, p, stack)


@pytest.fixture
def rig():
    clock = FakeClock()
    stack = type("Stack", (), {})()
    stack.clock, stack.log = clock, []
    history = History()
    player = FaultPlayer(stack, history, clock=clock.clock, sleep=clock.sleep, kinds={"rec": RecKind()})
    return clock, stack, history, player


def item(start, duration, target, **params):
    return {"start_s": start, "duration_s": duration, "kind": "rec", "target": target, "params": params}


def nemesis_ops(history):
    return [op for op in history.ops if op["process"] == "nemesis"]


def test_faults_apply_verify_and_heal_at_their_times(rig):
    clock, stack, history, player = rig
    results = player.play([item(1, 2, "a"), item(4, 1, "b")])
    assert [(what, t, round(at - 100, 3)) for what, t, at in stack.log] == [
        ("apply", "a", 1), ("verify", "a", 1), ("heal", "a", 3), ("apply", "b", 4), ("verify", "b", 4), ("heal", "b", 5)]
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert all(r["verified"] is True and r["unhealed"] == [] for r in results)
    assert results[0]["started_s"] == 1 and results[0]["healed_s"] == 3
    assert max(clock.sleeps) <= 0.2, "no sleep over 0.2 s"


def test_history_op_shape(rig):
    clock, stack, history, player = rig
    player.play([item(0, 1, "a", cost_s=0.25)])
    ops = nemesis_ops(history)
    assert [(op["type"], op["f"]) for op in ops] == [("invoke", "start"), ("ok", "start"), ("invoke", "stop"), ("ok", "stop")]
    assert ops[0]["value"] == {"kind": "rec", "target": "a", "params": {"cost_s": 0.25}, "index": 0}
    done = ops[1]["value"]
    assert set(done) == {"verified", "evidence", "error", "apply_ms", "verify_ms"}
    assert done["verified"] is True and done["error"] is None and done["apply_ms"] == 250.0
    assert ops[2]["value"] == {"kind": "rec", "target": "a", "index": 0}
    assert ops[3]["value"] == {"unhealed": []}
    assert all(c is not None for _, c in pairs(history)), "every invoke completed"


def test_overlapping_faults_on_different_targets_both_play(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 5, "a"), item(1, 2, "b")])
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert [(w, t) for w, t, _ in stack.log] == [("apply", "a"), ("verify", "a"), ("apply", "b"), ("verify", "b"),
                                               ("heal", "b"), ("heal", "a")]


def test_a_conflicting_fault_on_a_busy_target_is_skipped_as_info(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 5, "a"), item(1, 1, "a"), item(2, 1, "a", lane="rule")])
    assert [r["status"] for r in results] == ["applied", "skipped", "skipped"]
    assert results[1]["reason"] == "target busy" and results[1]["busy_with"] == [0]
    info = [op for op in nemesis_ops(history) if op["type"] == "info"]
    assert [(op["f"], op["value"]["index"], op["value"]["reason"]) for op in info] == [("start", 1, "target busy"),
                                                                                      ("start", 2, "target busy")]
    assert len([w for w, _, _ in stack.log if w == "apply"]) == 1


def test_stackable_lanes_overlap_on_one_target(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 5, "a", lane="rule"), item(1, 1, "a", lane="rule"), item(2, 1, "a", lane="cut")])
    assert [r["status"] for r in results] == ["applied", "applied", "skipped"]   # rule+rule stack; cut+rule not


def test_a_target_freed_at_the_same_instant_takes_the_next_fault(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 2, "a"), item(2, 1, "a")])
    assert [r["status"] for r in results] == ["applied", "applied"], "heals run before applies at equal times"


def test_a_failed_apply_is_recorded_as_fail_and_never_healed(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 1, "a", fail=True), item(0, 1, "b", bogus=1), {**item(0, 1, "c"), "kind": "nope"}])
    assert [r["status"] for r in results] == ["failed"] * 3
    assert "could not apply" in results[0]["error"] and "bogus" in results[1]["error"] and "nope" in results[2]["error"]
    ops = nemesis_ops(history)
    assert [(op["type"], op["f"]) for op in ops] == [("invoke", "start"), ("fail", "start")] * 3
    assert ops[1]["value"]["verified"] is False and "could not apply" in ops[1]["value"]["error"]
    assert not [w for w, _, _ in stack.log if w == "heal"]


def test_a_verify_that_did_not_hold_is_recorded_unverified(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 1, "a", hold=False)])
    assert results[0]["status"] == "applied" and results[0]["verified"] is False
    done = nemesis_ops(history)[1]
    assert done["type"] == "ok" and done["value"]["verified"] is False


def test_unhealed_faults_are_recorded_and_heal_all_retries_idempotently(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 1, "a", stuck=2)])
    stops = [op for op in nemesis_ops(history) if op["f"] == "stop" and op["type"] != "invoke"]
    assert [op["type"] for op in stops] == ["fail", "fail"]   # at its time, and once more at the end of play
    assert stops[0]["value"] == {"unhealed": ["a stuck"]}
    assert results[0]["unhealed"] == ["a stuck"] and player.active == [0]
    assert player.heal_all() == [] and player.active == []
    count = len(history)
    assert player.heal_all() == [] and len(history) == count, "nothing left: heal_all does nothing"


def test_a_stop_event_heals_early_and_skips_the_rest(rig):
    clock, stack, history, player = rig
    stop = threading.Event()
    clock.on_sleep = lambda now: stop.set() if now >= 102 else None
    results = player.play([item(0, 10, "a"), item(5, 1, "b")], stop=stop)
    assert results[0]["status"] == "applied" and round(results[0]["healed_s"]) == 2
    assert results[1]["status"] == "skipped" and results[1]["reason"] == "stopped"
    assert player.active == []


def test_the_deadline_heals_early_and_skips_the_rest(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 10, "a"), item(5, 1, "b")], deadline_s=3)
    assert round(results[0]["healed_s"], 3) == 3 and results[1]["reason"] == "deadline"


def test_a_late_apply_is_visible_in_the_result(rig):
    clock, stack, history, player = rig
    results = player.play([item(0, 1, "a", cost_s=2.0), item(1, 1, "b")])
    assert results[1]["planned_start_s"] == 1 and results[1]["started_s"] == 2


@pytest.mark.parametrize("bad", [[{"start_s": 0}], [item(-1, 1, "a")], [item(0, "1", "a")], ["x"],
                                 [{**item(0, 1, "a"), "params": []}]])
def test_bad_schedule_items_are_rejected(rig, bad):
    with pytest.raises(NemesisError):
        rig[3].play(bad)


def test_real_kinds_on_the_fake_stack(monkeypatch):
    """The registry's kinds under the player: a kill overlapping a partition elsewhere, a pause on the
    killed service skipped, the loss of a cut-off worker skipped, everything healed."""
    stack = FakeStack()
    monkeypatch.setattr(kinds_process, "send_trigger", lambda method, url, body=None, timeout_s=5.0: stack.put_faults(url, body))
    clock = FakeClock()
    history = History()
    player = FaultPlayer(stack, history, clock=clock.clock, sleep=clock.sleep)
    assert player.kinds is REGISTRY
    schedule = [
        {"start_s": 0, "duration_s": 4, "kind": "kill", "target": "worker-a1", "params": {}},
        {"start_s": 1, "duration_s": 2, "kind": "partition", "target": "orchestrator|hive-b", "params": {}},
        {"start_s": 1.5, "duration_s": 1, "kind": "pause", "target": "worker-a1", "params": {}},
        {"start_s": 2, "duration_s": 1, "kind": "loss", "target": "hive-b", "params": {"percent": 20}},
        {"start_s": 2, "duration_s": 1, "kind": "loss", "target": "worker-b1", "params": {"percent": 20}},
    ]
    results = player.play(schedule)
    assert [r["status"] for r in results] == ["applied", "applied", "skipped", "skipped", "applied"]
    assert all(r["verified"] for r in results if r["status"] == "applied"), results
    assert player.heal_all() == []
    assert all(stack.state[s]["status"] == "running" for s in stack.services)
    assert stack.attached == FakeStack().attached and not any(stack.rules.values())
