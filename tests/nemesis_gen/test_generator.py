"""Generator: determinism, the schedule rules on every shipped profile, JSON round trip, profile validation."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.nemesis import generator as gen
from harness.nemesis.generator import (conflict_key, generate, load_profile, read_schedule, schedule_json,
                                       validate_profile)

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"rate_per_min": 30, "max_overlap": 2, "min_duration_s": 1, "max_duration_s": 3, "quiet_s": 5,
         "kinds": {"pause": {"weight": 1, "targets": ["worker-a1", "worker-a2"]},
                   "loss": {"weight": 2, "targets": ["hive-a"],
                            "params": {"percent": {"min": 5, "max": 40}}}}}


def ms(seconds):
    """Return whole milliseconds (the generator's exact clock; float sums like 27.699 + 2.832 are not exact)."""
    return round(seconds * 1000)


def rule_violations(schedule, profile, duration_s):
    """Return every broken schedule rule (empty when the schedule obeys the profile)."""
    bad = []
    starts = [f["start_s"] for f in schedule]
    if starts != sorted(starts):
        bad.append("not sorted by start_s")
    for i, f in enumerate(schedule):
        end = ms(f["start_s"]) + ms(f["duration_s"])
        if end > ms(duration_s - profile["quiet_s"]):
            bad.append(f"#{i} ends at {end} inside the quiet period")
        if f["start_s"] < profile.get("start_after_s", 0):
            bad.append(f"#{i} starts in the warm-up")
        if not profile["min_duration_s"] <= f["duration_s"] <= profile["max_duration_s"]:
            bad.append(f"#{i} duration {f['duration_s']} out of range")
        if round(f["start_s"], 3) != f["start_s"] or round(f["duration_s"], 3) != f["duration_s"]:
            bad.append(f"#{i} not rounded to ms")
        if f["target"] not in profile["kinds"][f["kind"]]["targets"]:
            bad.append(f"#{i} target {f['target']} not in the profile for {f['kind']}")
        active = [g for g in schedule[:i] if ms(g["start_s"]) + ms(g["duration_s"]) > ms(f["start_s"])]
        if len(active) + 1 > profile["max_overlap"]:
            bad.append(f"#{i} makes {len(active) + 1} overlapping faults")
        if any(conflict_key(g["target"]) == conflict_key(f["target"]) for g in active):
            bad.append(f"#{i} overlaps another fault on {f['target']}")
    return bad


def test_same_inputs_give_byte_identical_json():
    prof = load_profile("ci")
    a = schedule_json(generate(42, prof, 180, "abc123"), {"seed": 42})
    b = schedule_json(generate(42, load_profile("ci"), 180, "abc123"), {"seed": 42})
    assert a == b and a.endswith("\n") and len(json.loads(a)["schedule"]) > 20


def test_determinism_holds_across_processes_with_different_hash_seeds():
    code = ("from harness.nemesis.generator import *; import sys; "
            "sys.stdout.write(schedule_json(generate(7, load_profile('selftest'), 120, 'rev'), {}))")
    outs = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(h)}, timeout=60).stdout for h in (1, 2)}
    assert len(outs) == 1 and json.loads(outs.pop())["schedule"]


def test_seed_revision_and_profile_each_change_the_schedule():
    prof = load_profile("ci")
    base = generate(1, prof, 180, "r1")
    assert generate(2, prof, 180, "r1") != base
    assert generate(1, prof, 180, "r2") != base
    assert generate(1, dict(prof, max_overlap=1), 180, "r1") != base


def test_normalised_and_raw_profiles_seed_the_same():
    raw = json.loads(json.dumps(SMALL))
    assert generate(3, raw, 120) == generate(3, validate_profile(raw), 120)


@pytest.mark.parametrize("name,duration", [("default", 1800), ("ci", 180), ("selftest", 180)])
def test_shipped_profiles_obey_every_rule(name, duration):
    prof = load_profile(name)
    for seed in range(5):
        schedule = generate(seed, prof, duration, "rev")
        assert schedule and rule_violations(schedule, prof, duration) == []


def test_rule_checker_catches_a_broken_schedule():
    prof = validate_profile(SMALL)
    bad = [{"start_s": 1.0, "duration_s": 2.0, "kind": "pause", "target": "worker-a1", "params": {}},
           {"start_s": 1.5, "duration_s": 2.0, "kind": "pause", "target": "worker-a1", "params": {}},
           {"start_s": 1.6, "duration_s": 2.0, "kind": "pause", "target": "worker-a2", "params": {}},
           {"start_s": 59.0, "duration_s": 0.5, "kind": "pause", "target": "worker-x", "params": {}}]
    found = " | ".join(rule_violations(bad, prof, 60))
    for words in ("overlaps another fault", "3 overlapping", "quiet period", "out of range", "not in the profile"):
        assert words in found


def test_default_profile_rate_mix_and_overlap():
    prof = load_profile("default")
    assert prof["max_overlap"] == 3 and (prof["min_duration_s"], prof["max_duration_s"]) == (1.5, 6.0)
    for seed in (11, 12, 13):
        schedule = generate(seed, prof, 1800, "rev")
        assert len(schedule) / 30 >= 20, f"seed {seed}: {len(schedule) / 30:.1f} faults/min"
        assert set(Counter(f["kind"] for f in schedule)) == set(gen.DEFAULT_KINDS)
        peak = max(sum(1 for g in schedule
                       if ms(g["start_s"]) <= ms(f["start_s"]) < ms(g["start_s"]) + ms(g["duration_s"]))
                   for f in schedule)
        assert peak == 3          # overlap is used, up to the limit


def test_ci_and_selftest_profiles_keep_to_their_scope():
    ci, st = load_profile("ci"), load_profile("selftest")
    assert not {k for k in ci["kinds"] if k.startswith("storage")}
    assert "orchestrator" not in ci["kinds"]["kill"]["targets"]
    assert ci["max_overlap"] == 2 and ci["quiet_s"] == 8
    rate = sum(len(generate(s, ci, 180)) for s in range(10)) / 10 / 3
    assert 17 <= rate <= 24, rate
    assert set(st["kinds"]) == {"partition", "pause"}   # a kill would drop the runtime bug knob
    assert all(t.startswith("hive-") and "|worker-" in t for t in st["kinds"]["partition"]["targets"])
    assert all(t.startswith("worker-") for t in st["kinds"]["pause"]["targets"])


def test_params_are_drawn_from_their_specs():
    prof = dict(SMALL, kinds=dict(SMALL["kinds"], partition={
        "weight": 1, "targets": ["orchestrator|*"], "params": {"direction": ["both", "a->b"], "tag": "x"}}))
    schedule = generate(5, prof, 600)
    loss = [f["params"]["percent"] for f in schedule if f["kind"] == "loss"]
    part = [f["params"] for f in schedule if f["kind"] == "partition"]
    assert loss and all(isinstance(p, int) and 5 <= p <= 40 for p in loss)
    assert {p["direction"] for p in part} == {"both", "a->b"} and all(p["tag"] == "x" for p in part)
    assert all(f["params"] == {} for f in schedule if f["kind"] == "pause")


def test_arrivals_that_break_a_rule_are_dropped_not_shifted(monkeypatch):
    monkeypatch.setattr(gen, "canonical_json", lambda _value: "same-seed-for-both")
    monkeypatch.setattr(gen, "conflict_key", lambda _target: object())   # only max_overlap drops now
    loose = generate(9, dict(SMALL, max_overlap=50), 300)
    strict = generate(9, dict(SMALL, max_overlap=1), 300)
    assert len(strict) < len(loose)
    assert all(f in loose for f in strict)


def test_round_trip_through_file_and_run_dir(tmp_path):
    schedule = generate(3, load_profile("selftest"), 90, "rev")
    meta = {"seed": 3, "profile": "selftest", "revision": "rev", "duration_s": 90}
    text = schedule_json(schedule, meta)
    (tmp_path / "schedule.json").write_text(text)
    assert read_schedule(tmp_path / "schedule.json") == (schedule, meta)
    assert read_schedule(tmp_path) == (schedule, meta)
    assert schedule_json(*read_schedule(tmp_path)) == text
    assert schedule_json([], {}) == '{"meta": {},\n "schedule": []}\n'
    (tmp_path / "bare.json").write_text(json.dumps(schedule))
    assert read_schedule(tmp_path / "bare.json") == (schedule, {})


@pytest.mark.parametrize("body,words", [
    ("[1, 2", "not valid JSON"),
    ('{"schedule": [{"start_s": 1}]}', r"schedule\[0\]: a fault has exactly keys"),
    ('{"schedule": [], "seed": 1}', "seed: unknown key"),
    ('{"meta": {}}', "a schedule file is"),
    ('[{"start_s": 2, "duration_s": 1, "kind": "pause", "target": "w", "params": {}},'
     ' {"start_s": 1, "duration_s": 1, "kind": "pause", "target": "w", "params": {}}]', "not sorted"),
    ('[{"start_s": -1, "duration_s": 1, "kind": "pause", "target": "w", "params": {}}]', "start_s"),
])
def test_read_schedule_rejects_bad_files_naming_them(tmp_path, body, words):
    path = tmp_path / "s.json"
    path.write_text(body)
    with pytest.raises(ValueError, match=words) as err:
        read_schedule(path)
    assert str(path) in str(err.value)


def test_read_schedule_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="schedule.json: cannot read"):
        read_schedule(tmp_path)


@pytest.mark.parametrize("change,key", [
    ({"speed": 3}, "speed: unknown key"),
    ({"rate_per_min": "fast"}, "rate_per_min: must be a number"),
    ({"rate_per_min": 0}, "rate_per_min"),
    ({"max_overlap": 1.5}, "max_overlap: must be an integer"),
    ({"max_duration_s": 0.5}, "max_duration_s: 0.5 is below"),
    ({"kinds": {}}, "kinds: must be a non-empty"),
    ({"kinds": {"explode": {"weight": 1, "targets": ["worker-a1"]}}}, "kinds.explode: unknown kind"),
    ({"kinds": {"pause": {"weight": 1, "targets": ["worker-a1"], "every": 2}}}, "kinds.pause.every: unknown key"),
    ({"kinds": {"pause": {"weight": -1, "targets": ["worker-a1"]}}}, "kinds.pause.weight"),
    ({"kinds": {"pause": {"weight": 1, "targets": ["a|b"]}}}, r"kinds.pause.targets\[0\]: pause needs a service"),
    ({"kinds": {"partition": {"weight": 1, "targets": ["worker-a1"]}}}, "partition needs a link"),
    ({"kinds": {"partition": {"weight": 1, "targets": ["*|worker-a1"]}}}, "partition needs a link"),
    ({"kinds": {"loss": {"weight": 1, "targets": ["hive-a|worker-a1"]}}}, "loss needs a service"),
    ({"kinds": {"partition": {"weight": 1, "targets": ["a|b"], "params": {"direction": "sideways"}}}},
     "kinds.partition.params.direction"),
    ({"kinds": {"loss": {"weight": 1, "targets": ["a"], "params": {"percent": {"min": 9, "max": 1}}}}},
     "kinds.loss.params.percent: range needs"),
    ({"kinds": {"pause": {"weight": 1, "targets": ["w1", "w1"]}}}, "lists a target twice"),
])
def test_load_profile_rejects_bad_keys_naming_key_and_file(tmp_path, change, key):
    path = tmp_path / "bad.yml"
    path.write_text(json.dumps({**SMALL, **change}))           # JSON is YAML
    with pytest.raises(ValueError, match=key) as err:
        load_profile(str(path))
    assert str(path) in str(err.value)


def test_load_profile_missing_key_unknown_name_and_bad_yaml(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text(json.dumps({k: v for k, v in SMALL.items() if k != "quiet_s"}))
    with pytest.raises(ValueError, match="quiet_s: required"):
        load_profile(str(path))
    with pytest.raises(ValueError, match="no profile named 'nope'.*ci, default, selftest"):
        load_profile("nope")
    path.write_text("kinds: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_profile(str(path))
    with pytest.raises(ValueError, match="known: pause"):
        load_profile("selftest", known_kinds=["pause"])


def test_generate_rejects_bad_duration_and_handles_a_window_too_short():
    with pytest.raises(ValueError, match="duration_s"):
        generate(1, SMALL, 0)
    assert generate(1, SMALL, 5.5) == []          # quiet 5 s leaves no room for a 1 s fault
