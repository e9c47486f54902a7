"""The kit's behave layer without Docker: KitWorld records faults as nemesis ops and heals them, the hooks
start a stack once and always take it down, close_world fails a scenario whose fault could not be undone,
and the checker steps pass and fail on crafted histories (the stale-read step fails on a valid one)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.behave import hooks
from harness.behave.steps import checks, faults
from harness.behave.world import KitWorld
from harness.history import History
from harness.nemesis.protocol import REGISTRY


class FakeFault:
    def __init__(self, target: str, left: list[str]):
        self.kind, self.target, self.params, self.left, self.heals = "fake", target, {}, left, 0

    def verify(self) -> dict:
        return {"held": self.target != "unheld", "evidence": {"target": self.target}}

    def heal(self) -> list[str]:
        self.heals += 1
        return list(self.left)


class FakeKind:
    name = "fake"

    def __init__(self):
        self.left: list[str] = []

    def apply(self, stack, target, **params):
        if target == "refused":
            raise RuntimeError("refused")
        return FakeFault(target, self.left)


class FakeStack:
    def __init__(self, fail_up: bool = False):
        self.fail_up, self.ups, self.downs, self.heals = fail_up, 0, 0, 0

    def up(self, timeout_s: float) -> float:
        self.ups += 1
        if self.fail_up:
            raise RuntimeError("no start")
        return 0.0

    def down(self) -> list[str]:
        self.downs += 1
        return []

    def heal(self) -> list[str]:
        self.heals += 1
        return []


@pytest.fixture()
def kind(monkeypatch):
    fake = FakeKind()
    monkeypatch.setitem(REGISTRY, "fake", fake)
    return fake


def test_faults_are_nemesis_ops_and_heal(kind):
    world = KitWorld(FakeStack())
    world.vars["leader"] = "n1"
    ctx = SimpleNamespace(world=world)
    faults.apply_fault(ctx, "fake", "{leader}|*")
    faults.fault_held(ctx)
    with pytest.raises(RuntimeError):
        world.apply("fake", "refused")
    faults.heal_every_fault(ctx)
    faults.every_fault_healed(ctx)
    ops = [(op["process"], op["type"], op["f"], op["value"]) for op in world.history.ops]
    assert ops[:2] == [("nemesis", "invoke", "fake", "n1|*"), ("nemesis", "info", "fake", "n1|*")]
    assert ("nemesis", "fail", "fake", "refused") in ops and ops[-1][:3] == ("nemesis", "info", "heal")
    assert world.faults == [] and world.left == []


def test_an_unknown_var_and_an_unheld_fault_fail_the_step(kind):
    ctx = SimpleNamespace(world=KitWorld(FakeStack()))
    with pytest.raises(AssertionError, match="leader"):
        faults.apply_fault(ctx, "fake", "{leader}")
    faults.apply_fault(ctx, "fake", "unheld")
    with pytest.raises(AssertionError, match="did not hold"):
        faults.fault_held(ctx)


def test_close_world_heals_and_fails_on_leftovers(kind):
    stack = FakeStack()
    ctx = SimpleNamespace(stack=stack)
    world = hooks.open_world(ctx)
    world.apply("fake", "n1")
    hooks.close_world(ctx)
    assert world.faults == [] and stack.heals == 0
    kind.left = ["n2 still cut"]
    world = hooks.open_world(ctx)
    world.apply("fake", "n2")
    with pytest.raises(AssertionError, match="n2 still cut"):
        hooks.close_world(ctx)
    assert stack.heals == 1


def test_install_downs_once_and_also_when_up_fails(monkeypatch):
    monkeypatch.setenv(hooks.RUN_ID_ENV, "kit-test")
    ctx, stack = SimpleNamespace(), FakeStack()
    seen = []
    assert hooks.install(ctx, lambda run_id: seen.append(run_id) or stack) is stack
    hooks.teardown(ctx)
    hooks.teardown(ctx)
    assert seen == ["kit-test"] and (stack.ups, stack.downs) == (1, 1)
    ctx, broken = SimpleNamespace(), FakeStack(fail_up=True)
    with pytest.raises(RuntimeError, match="no start"):
        hooks.install(ctx, lambda run_id: broken)
    assert broken.downs == 1


def register_history(stale: bool) -> History:
    h = History()
    for value in ("a", "b"):
        op = h.invoke(1, "write", value, key="k")
        h.complete(op, "ok", value, key="k")
    h.record("nemesis", "info", "partition", "n1|*")
    op = h.invoke(2, "read", None, key="k")
    h.complete(op, "ok", "a" if stale else "b", key="k")
    return h


def test_the_checker_steps_pass_and_fail():
    ok = SimpleNamespace(world=KitWorld(FakeStack(), register_history(stale=False)))
    checks.history_linearizable(ok)
    assert ok.world.verdict["valid"] is True
    with pytest.raises(AssertionError, match="did not fail"):
        checks.history_has_stale_read(ok)
    bad = SimpleNamespace(world=KitWorld(FakeStack(), register_history(stale=True)))
    with pytest.raises(AssertionError, match="stale-read"):
        checks.history_linearizable(bad)
    checks.history_has_stale_read(bad)
    assert bad.world.verdict["valid"] is False and bad.world.vars["stale_reads"]
