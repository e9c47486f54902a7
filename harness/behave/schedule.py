"""The kit's seeded soak: draw a fault schedule (seed, profile, length) with the generator, print it with its
seed, play it into a KitWorld, and judge that it played (every fault applied and proved, at least N).

The seed is the run's ($APIARY_SEED, the runner's --seed; a fresh one without it), or one the caller names. The
seed, the profile and the length give the schedule byte for byte (harness/nemesis/generator.py), so a failed
soak is replayed with `--seed N`. A profile is a name in the x-apiary.profiles directory or a YAML file, a
relative path read beside the stack's compose file."""
from __future__ import annotations

import os
import secrets
from collections import Counter
from pathlib import Path

from harness.behave.world import KitWorld, say
from harness.nemesis.generator import draw

SEED_ENV = "APIARY_SEED"   # the runner's --seed (harness/settings.py writes it for the behave process)
PLAY_SLACK_S = 30.0        # the player's deadline past the soak's length: every fault is healed by then


def run_seed() -> int:
    """The run's seed ($APIARY_SEED), else a fresh random one (printed with the schedule either way)."""
    text = os.environ.get(SEED_ENV, "").strip()
    try:
        seed = int(text or 0)
    except ValueError:
        raise AssertionError(f"${SEED_ENV} must be an integer seed, not {text!r}") from None
    return seed or secrets.randbelow(2**31) + 1


def profile_path(stack, name: str) -> str:
    """A profile name as is; a relative YAML path resolved beside the stack's compose file (else the cwd)."""
    path = Path(name)
    if ("/" not in name and path.suffix not in (".yml", ".yaml")) or path.is_absolute():
        return name
    base = getattr(stack, "compose_file", None)
    return str(Path(base).parent / path if base else path.resolve())


def brief(rows: list[dict]) -> list[dict]:
    """The fields of played faults an assertion message names."""
    return [{k: r.get(k) for k in ("index", "kind", "target", "reason", "error", "evidence")} for r in rows]


def play_seeded(w: KitWorld, profile: str, seconds: float, seed: int | None = None) -> None:
    """Draw the schedule (seed, profile, length; the run's seed when None), print it with its seed, play it."""
    seed = run_seed() if seed is None else seed
    path = profile_path(w.stack, profile)
    try:
        schedule, meta = draw(seed, path, seconds)
    except ValueError as exc:
        raise AssertionError(f"no schedule from profile {profile!r}: {exc}") from None
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(Counter(i["kind"] for i in schedule).items()))
    say(f"[schedule] seed {seed}, profile {path}: {len(schedule)} faults over {seconds:g} s ({kinds or 'none'}); "
        f"replay it with --seed {seed}")
    for item in schedule:
        say(f"[schedule]   {item['start_s']:7.3f} s +{item['duration_s']:g} s  {item['kind']} {item['target']} "
            f"{item['params'] or ''}")
    w.play(schedule, meta, deadline_s=seconds + PLAY_SLACK_S)
    done = Counter(r["status"] for r in w.played)
    say(f"[schedule] seed {seed}: played {dict(done)}, verified {sum(bool(r['verified']) for r in w.played)}")


def check_played(w: KitWorld, n: int) -> None:
    """Fail, naming the seed, unless every scheduled fault applied and proved itself and at least n played."""
    assert w.played is not None, "no schedule was played (When the generator's fault schedule ... plays ...)"
    seed = f"seed {w.schedule_meta.get('seed')} (profile {w.schedule_meta.get('profile')})"
    failed = [r for r in w.played if r["status"] == "failed"]
    unverified = [r for r in w.played if r["status"] == "applied" and not r["verified"]]
    cut_short = [r for r in w.played if r["status"] == "skipped" and r["reason"] != "target busy"]
    assert not failed, f"{seed}: {len(failed)} fault(s) could not be applied: {brief(failed)}"
    assert not unverified, f"{seed}: {len(unverified)} fault(s) did not prove they took effect: {brief(unverified)}"
    assert not cut_short, f"{seed}: the schedule did not play to its end: {brief(cut_short)}"
    verified = sum(r["status"] == "applied" for r in w.played)
    assert verified >= n, (f"{seed}: {verified} of {len(w.played)} scheduled faults played and proved in effect, "
                           f"fewer than {n} (the rest skipped: their target was busy)")
