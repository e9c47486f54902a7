"""The chaos soak's own proof that it can fail: with the deliberate dup-final bug on, a 15 s soak under the
selftest profile is judged invalid from the workers' ledgers (duplicate-execution) and the run exits 1,
whatever git revision it runs at; the same evidence with the ledger check switched off would pass; and
--replay of that soak fails the same check again with the same faults. ~60-80 s; skipped without an engine.
The shrink of such a soak is the @selftest feature's job (features/selftest.soak.feature) and bench.chaos's."""
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from apiary_suite import independent
from harness.history import History
from harness.nemesis.generator import generate, load_profile
from harness.sweep import leftovers
from services.protocol import generate_text

ROOT = Path(__file__).resolve().parents[2]
RUNNER = str(ROOT / "run-integration-tests.sh")
SECONDS = 15      # the selftest profile's required faults end at 6.5 s; its 8 s quiet period follows
SOAK = ("--soak", "--profile", "selftest", "--seed", "7", "--bug", "dup-final", "--minutes", str(SECONDS / 60))


def run(tmp_path, *args, revision, timeout_s=240):
    """One runner process with its own report dir, drawing schedules as if at `revision`;
    returns (exit code, output, run dir, summary)."""
    env = dict(os.environ, APIARY_SOAK_REVISION=revision)
    out = subprocess.run([RUNNER, "--no-build", "--report-dir", str(tmp_path), *args], cwd=ROOT, text=True, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)
    run_dir = (tmp_path / "latest").resolve()
    return out.returncode, out.stdout, run_dir, json.loads((run_dir / "summary.json").read_text())


def rejudge(soak_dir, check_execution=None):
    """The independent checker over a soak's recorded evidence, optionally with its ledger check replaced."""
    ops = History.from_jsonl((soak_dir / "history.jsonl").read_text()).ops
    ledgers = json.loads((soak_dir / "ledgers.json").read_text())
    lookups = json.loads((soak_dir / "lookups.json").read_text())
    saved = independent.check_execution
    if check_execution is not None:
        independent.check_execution = check_execution
    try:
        return independent.check_soak(ops, ledgers, lookups, generate_text)
    finally:
        independent.check_execution = saved


def dup_kinds(verdict):
    return [a for a in verdict["anomalies"] if a["kind"] == "duplicate-execution"]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(540)    # two runner runs of <= 240 s each (a stack start takes 5 s idle, 25 s at load 20)
def test_the_dup_final_bug_is_caught_on_any_revision_and_replayed(docker_engine, stack_images, tmp_path):
    revision = f"fake-{secrets.token_hex(4)}"        # a revision nobody has: the schedule must not care
    code, out, run_dir, summary = run(tmp_path / "soak", *SOAK, revision=revision)
    assert code == 1, out[-4000:]
    soak_dir = run_dir / "soak"
    soak = json.loads((soak_dir / "soak.json").read_text())
    assert soak["git_revision"] == revision and soak["bug"] == "dup-final"
    played = json.loads((soak_dir / "schedule.json").read_text())["schedule"]
    assert played == generate(7, load_profile("selftest"), SECONDS, "any other revision"), "schedule drew on the revision"
    required = load_profile("selftest")["required"]
    forced = [i for i in soak["intervals"] if i["verified"]
              and {"kind": i["kind"], "target": i["target"]} in [{"kind": r["kind"], "target": r["target"]}
                                                                for r in required]]
    assert len(forced) == len(required), f"a required fault did not take effect: {soak['intervals']}"
    assert soak["checks"]["checker"]["passed"] is False and soak["verdict"]["valid"] is False, soak["checks"]
    assert any(f["scenario"].endswith(": checker") and f["bundle"] for f in summary["failures"]), summary["failures"]
    dup = dup_kinds(soak["verdict"])
    assert dup, soak["verdict"]["anomalies"][:5]
    assert len([e for e in dup[0]["ledger"] if e["event"] == "finish"]) >= 2   # the workers' own evidence
    assert leftovers(docker_engine, summary["run_id"]) == {"containers": [], "networks": [], "volumes": []}

    # can fail: the same evidence re-judged finds the duplicate, and without the ledger check it would pass
    assert dup_kinds(rejudge(soak_dir))
    blind = rejudge(soak_dir, check_execution=lambda *_args: [])
    assert not dup_kinds(blind) and blind["valid"] is not False, blind["anomalies"][:5]

    code, out, replay_dir, summary = run(tmp_path / "replay", "--replay", str(soak_dir), revision="another-fake")
    assert code == 1, out[-4000:]
    replayed = json.loads((replay_dir / "replay" / "soak.json").read_text())
    assert replayed["replayed"] and replayed["bug"] == "dup-final"
    assert dup_kinds(replayed["verdict"]), replayed["verdict"]["anomalies"][:5]
    assert (replay_dir / "replay" / "schedule.json").read_text().split("\n", 1)[1] == \
        (soak_dir / "schedule.json").read_text().split("\n", 1)[1]   # the same faults, byte for byte
    assert (replay_dir / "index.html").exists() and (replay_dir / "replay" / "timeline.png").exists()
    assert leftovers(docker_engine, summary["run_id"]) == {"containers": [], "networks": [], "volumes": []}
