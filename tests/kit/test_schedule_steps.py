"""The kit's soak steps without Docker: a profile beside the stack's compose file and a seed give one schedule,
which the player applies, verifies and heals into the world's history; the Then passes only when enough faults
played and every one proved it took effect, and names the seed when it fails; a fault the player could not undo
stays in world.active and fails "every fault was healed" and close_world; the etcd example's profile leaves its
feature's floor of faults for every seed under the real player's skip rule."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.behave import hooks
from harness.behave import schedule as kit_schedule
from harness.behave.steps import faults, schedule
from harness.behave.world import KitWorld
from harness.history import History
from harness.nemesis.generator import generate, load_profile
from harness.nemesis.player import FaultPlayer
from harness.nemesis.protocol import REGISTRY, FaultKind
from harness.stack import load

ETCD = Path(__file__).resolve().parents[2] / "examples" / "etcd"

PROFILE = """\
pin_revision: true
rate_per_min: 600
max_overlap: 1
min_duration_s: 0.05
max_duration_s: 0.1
quiet_s: 0.1
start_after_s: 0
min_faults_per_min: 120
kinds:
  pause: {weight: 1, targets: [n1, n2, n3]}
  kill: {weight: 1, targets: [n1, n2, n3]}
"""


class FakeFault:
    def __init__(self, kind: str, target: str, kit: "FakeKind"):
        self.kind, self.target, self.params, self.kit = kind, target, {}, kit

    def verify(self) -> dict:
        return {"held": self.kind not in self.kit.unheld, "evidence": {"target": self.target}}

    def heal(self) -> list[str]:
        return [f"{self.target} stuck"] if self.kind in self.kit.stuck else []


class FakeKind(FaultKind):
    """Stands in for a registry kind: counts applies; may refuse, fail to hold or fail to heal."""

    defaults: dict = {}

    def __init__(self, name: str):
        self.name, self.applied = name, []
        self.unheld: set[str] = set()
        self.stuck: set[str] = set()
        self.refused: set[str] = set()

    def targets(self, stack):
        return ["n1", "n2", "n3"]

    def apply(self, stack, target, **params):
        if self.name in self.refused:
            raise RuntimeError(f"{self.name} refused")
        self.applied.append(target)
        return FakeFault(self.name, target, self)


@pytest.fixture()
def kinds(monkeypatch):
    fakes = {}
    for name in ("pause", "kill"):
        fakes[name] = FakeKind(name)
        monkeypatch.setitem(REGISTRY, name, fakes[name])
    return fakes


@pytest.fixture()
def ctx(tmp_path):
    (tmp_path / "soak.yml").write_text(PROFILE)
    stack = SimpleNamespace(compose_file=tmp_path / "docker-compose.yml", services=["n1", "n2", "n3"],
                            heal=lambda: [])
    return SimpleNamespace(world=KitWorld(stack), stack=stack)


def starts(world: KitWorld) -> list[tuple]:
    return [(op["value"]["kind"], op["value"]["target"]) for op in world.history.ops
            if op["process"] == "nemesis" and op["f"] == "start" and op["type"] == "invoke"]


def test_a_seeded_schedule_plays_verified_and_healed_and_replays_the_same(ctx, kinds, tmp_path):
    schedule.play_given_seed(ctx, "soak.yml", 1.0, 7)
    w = ctx.world
    played = [r for r in w.played if r["status"] == "applied"]
    assert len(played) >= 2 and all(r["verified"] and r["unhealed"] == [] for r in played)
    assert w.schedule_meta == {"seed": 7, "profile": str(tmp_path / "soak.yml"), "duration_s": 1.0,
                               "faults": len(w.played), "git_revision": "", "quiet_s": 0.1}
    assert any(op["f"] == "schedule" and op["seed"] == 7 for op in w.history.ops)
    schedule.schedule_played(ctx, len(played))
    with pytest.raises(AssertionError, match=r"seed 7 .*fewer than"):
        schedule.schedule_played(ctx, len(played) + 1)
    faults.heal_every_fault(ctx)
    faults.every_fault_healed(ctx)
    again = SimpleNamespace(world=KitWorld(ctx.stack), stack=ctx.stack)
    schedule.play_given_seed(again, "soak.yml", 1.0, 7)
    other = SimpleNamespace(world=KitWorld(ctx.stack), stack=ctx.stack)
    schedule.play_given_seed(other, "soak.yml", 1.0, 8)
    assert starts(again.world) == starts(w) != starts(other.world)


def test_a_fault_that_did_not_hold_or_apply_fails_the_then_naming_it(ctx, kinds):
    kinds["kill"].unheld.add("kill")
    schedule.play_given_seed(ctx, "soak.yml", 1.0, 7)
    assert kinds["kill"].applied, "seed 7 draws no kill: pick another seed for this test"
    with pytest.raises(AssertionError, match=r"seed 7 .*did not prove they took effect.*'kill'"):
        schedule.schedule_played(ctx, 1)
    kinds["kill"].unheld.clear()
    kinds["pause"].refused.add("pause")
    refused = SimpleNamespace(world=KitWorld(ctx.stack), stack=ctx.stack)
    schedule.play_given_seed(refused, "soak.yml", 1.0, 7)
    with pytest.raises(AssertionError, match=r"could not be applied.*pause refused"):
        schedule.schedule_played(refused, 1)


def test_a_fault_the_player_could_not_undo_stays_active_and_fails_the_heal_checks(ctx, kinds):
    kinds["pause"].stuck.add("pause")
    schedule.play_given_seed(ctx, "soak.yml", 1.0, 7)
    assert kinds["pause"].applied, "seed 7 draws no pause: pick another seed for this test"
    assert ctx.world.active and all(name.startswith("pause ") for name in ctx.world.active)
    faults.heal_every_fault(ctx)
    with pytest.raises(AssertionError, match="stuck"):
        faults.every_fault_healed(ctx)
    with pytest.raises(AssertionError, match="could not be undone.*stuck"):
        hooks.close_world(ctx)


def test_the_seed_is_the_runs_and_a_bad_one_is_refused(monkeypatch):
    monkeypatch.setenv(kit_schedule.SEED_ENV, "1234")
    assert kit_schedule.run_seed() == 1234
    monkeypatch.setenv(kit_schedule.SEED_ENV, "twelve")
    with pytest.raises(AssertionError, match="APIARY_SEED must be an integer seed, not 'twelve'"):
        kit_schedule.run_seed()
    monkeypatch.delenv(kit_schedule.SEED_ENV)
    assert kit_schedule.run_seed() > 0


def test_profiles_are_names_or_files_beside_the_compose_file(ctx, kinds, tmp_path):
    assert kit_schedule.profile_path(ctx.stack, "ci") == "ci"
    assert kit_schedule.profile_path(ctx.stack, "soak.yml") == str(tmp_path / "soak.yml")
    assert kit_schedule.profile_path(ctx.stack, "/abs/p.yml") == "/abs/p.yml"
    with pytest.raises(AssertionError, match="no schedule from profile 'missing.yml'.*cannot read profile"):
        schedule.play_given_seed(ctx, "missing.yml", 1.0, 7)
    (tmp_path / "bad.yml").write_text(PROFILE.replace("pause:", "freeze:"))
    with pytest.raises(AssertionError, match="kinds.freeze: unknown kind"):
        schedule.play_given_seed(ctx, "bad.yml", 1.0, 7)


class Claimed:
    """A registry kind's own claims (the player's "target busy" rule) with an apply that only records."""

    def __init__(self, real):
        self.real = real

    def claims(self, stack, target, params):
        return self.real.claims(stack, target, params)

    def apply(self, stack, target, **params):
        return FakeFault(self.real.name, target, FakeKind(self.real.name))


def test_the_etcd_soaks_floor_holds_for_every_seed_under_the_players_rules():
    """examples/etcd/soak-profile.yml over the etcd topology, 36 s: every one of 200 seeds leaves at least the
    4 faults etcd.soak.feature asks for once the real player has skipped those whose services are busy."""
    topology = load(ETCD / "docker-compose.yml")
    stack = SimpleNamespace(topology=topology, services=list(topology.names), backend="docker")
    profile = load_profile(str(ETCD / "soak-profile.yml"))
    kinds = {name: Claimed(REGISTRY[name]) for name in profile["kinds"]}
    played = []
    for seed in range(200):
        now = [0.0]
        player = FaultPlayer(stack, History(), clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s),
                             kinds=kinds)
        played.append(sum(r["status"] == "applied" for r in player.play(generate(seed, profile, 36))))
    assert min(played) >= 4, f"seeds leaving fewer than 4 faults: {[s for s, n in enumerate(played) if n < 4]}"
