"""Generator: required faults and pin_revision (the self-test's determinism), and that profiles without
them still seed exactly as before (same seed + profile + revision -> the same bytes; a new revision -> new)."""
import hashlib
import json

import pytest

from harness.nemesis.generator import generate, load_profile, schedule_json, services_of, validate_profile

SMALL = {"rate_per_min": 30, "max_overlap": 2, "min_duration_s": 1, "max_duration_s": 3, "quiet_s": 5,
         "kinds": {"pause": {"weight": 1, "targets": ["worker-a1", "worker-a2"]},
                   "loss": {"weight": 2, "targets": ["hive-a"],
                            "params": {"percent": {"min": 5, "max": 40}}}}}
BUSY = {"rate_per_min": 120, "max_overlap": 3, "min_duration_s": 1, "max_duration_s": 4, "quiet_s": 2,
        "kinds": {"partition": {"weight": 3, "targets": ["hive-a|worker-a1", "hive-a|worker-a2", "hive-b|worker-b1",
                                                         "worker-b2|*"]},
                  "pause": {"weight": 2, "targets": ["worker-a1", "worker-a2", "worker-b1", "hive-a"]}},
        "required": [{"start_s": 5, "duration_s": 6, "kind": "partition", "target": "hive-a|worker-a1",
                      "params": {"direction": "both"}},
                     {"start_s": 20, "duration_s": 2, "kind": "pause", "target": "worker-b1"}]}
# sha256 of schedule_json(generate(42, SMALL, 300, "abc123"), {}): the seeding and drawing of a profile
# without required/pin_revision, fixed when those keys were added (ci and default were checked unchanged).
SMALL_GOLDEN = "db3bbed1e9f8788c8dc8642220c767398c8b15a094d8879358b4e3ad70e1bca6"


def overlaps(a, b):
    return a["start_s"] < b["start_s"] + b["duration_s"] and b["start_s"] < a["start_s"] + a["duration_s"]


def test_a_profile_without_the_new_keys_gives_the_same_bytes_as_before_and_depends_on_the_revision():
    text = schedule_json(generate(42, SMALL, 300, "abc123"), {})
    assert hashlib.sha256(text.encode()).hexdigest() == SMALL_GOLDEN
    assert "required" not in validate_profile(SMALL) and "pin_revision" not in validate_profile(SMALL)
    for name in ("ci", "default"):
        prof = load_profile(name)
        assert "pin_revision" not in prof and "required" not in prof
        assert generate(5, prof, 300, "rev-1") == generate(5, load_profile(name), 300, "rev-1")
        assert generate(5, prof, 300, "rev-1") != generate(5, prof, 300, "rev-2")


def test_pin_revision_gives_one_schedule_on_every_revision_and_still_depends_on_the_seed():
    prof = dict(SMALL, pin_revision=True)
    runs = {schedule_json(generate(3, prof, 300, rev), {}) for rev in ("", "abc", "4d4a566-dirty", "unknown")}
    assert len(runs) == 1
    assert generate(4, prof, 300, "abc") != generate(3, prof, 300, "abc")
    assert generate(3, dict(SMALL, pin_revision=False), 300, "a") != generate(3, dict(SMALL, pin_revision=False), 300, "b")


def test_required_faults_are_always_there_and_nothing_drawn_touches_their_services_meanwhile():
    required = validate_profile(BUSY)["required"]
    assert required[1] == {"start_s": 20.0, "duration_s": 2.0, "kind": "pause", "target": "worker-b1", "params": {}}
    for seed in range(30):
        for rev in ("r1", "r2"):
            schedule = generate(seed, BUSY, 60, rev)
            for req in required:
                assert req in schedule, f"seed {seed}: {req} missing"
            drawn = [f for f in schedule if f not in required]
            assert drawn, f"seed {seed}: nothing drawn besides the required faults"
            for f in drawn:
                for req in required:
                    if overlaps(f, req):
                        touched = services_of(f["target"])
                        assert "*" not in touched and not touched & services_of(req["target"]), (seed, f, req)
            for f in schedule:   # max_overlap holds at every start, the required faults counted
                at = round(f["start_s"] * 1000)
                active = [g for g in schedule if round(g["start_s"] * 1000) <= at
                          < round(g["start_s"] * 1000) + round(g["duration_s"] * 1000)]
                assert len(active) <= BUSY["max_overlap"], (seed, f, active)
            assert [f["start_s"] for f in schedule] == sorted(f["start_s"] for f in schedule)


def test_without_the_reservation_drawn_faults_would_have_hit_the_required_services():
    unreserved = dict(BUSY, required=[])
    hits = [f for seed in range(30) for f in generate(seed, unreserved, 60, "r1")
            for req in BUSY["required"] if overlaps(f, req)
            and (services_of(f["target"]) & services_of(req["target"]) or "*" in services_of(f["target"]))]
    assert hits        # so the previous test's check can fail: the rule, not luck, keeps them apart


def test_the_selftest_profile_forces_a_reregistration_on_every_revision():
    prof = load_profile("selftest")
    assert prof["pin_revision"] is True
    kinds = {(r["kind"], r["target"]) for r in prof["required"]}
    assert kinds == {("partition", "hive-a|worker-a1"), ("partition", "hive-b|worker-b2")}   # one per hive
    assert all(r["duration_s"] >= 2 for r in prof["required"])    # >> the hive's 0.8 s liveness expiry
    for seconds in (15, 30, 120):
        texts = {schedule_json(generate(7, prof, seconds, rev), {}) for rev in ("", "abc", "deadbeef-dirty")}
        assert len(texts) == 1
        schedule = json.loads(texts.pop())["schedule"]
        assert all(r in schedule for r in prof["required"])
    assert len(generate(7, prof, 30, "x")) >= 4        # the feature's "applied at least 4 faults"
    assert len(generate(7, prof, 130, "x")) >= 30      # bench.chaos shrink: a schedule of >= 30 faults


@pytest.mark.parametrize("required,words", [
    ({"start_s": 5, "duration_s": 2, "kind": "kill", "target": "worker-a1"}, r"required\[0\].kind: 'kill' is not"),
    ({"start_s": 5, "duration_s": 2, "kind": "pause", "target": "a|b"}, r"required\[0\].target: pause needs a service"),
    ({"start_s": 0.5, "duration_s": 2, "kind": "pause", "target": "worker-a1"}, r"required\[0\].start_s: must be"),
    ({"start_s": 5, "duration_s": 0, "kind": "pause", "target": "worker-a1"}, r"required\[0\].duration_s"),
    ({"start_s": 5, "kind": "pause", "target": "worker-a1"}, r"required\[0\]: a required fault has keys"),
    ({"start_s": 5, "duration_s": 2, "kind": "loss", "target": "hive-a", "params": {"percent": {"min": 1, "max": 5}}},
     r"required\[0\].params: must be a mapping of concrete values"),
])
def test_bad_required_faults_are_rejected_naming_the_key(required, words):
    with pytest.raises(ValueError, match=words):
        validate_profile(dict(SMALL, start_after_s=1, required=[required]))


def test_required_faults_must_keep_the_rules_among_themselves_and_fit_the_soak():
    twice = [{"start_s": 2, "duration_s": 3, "kind": "pause", "target": "worker-a1"},
             {"start_s": 4, "duration_s": 3, "kind": "pause", "target": "worker-a1"}]
    with pytest.raises(ValueError, match="required: pause worker-a1 at 4.0s overlaps"):
        validate_profile(dict(SMALL, required=twice))
    three = [{"start_s": 2 + i / 10, "duration_s": 3, "kind": "pause", "target": f"worker-a{i}"} for i in range(3)]
    with pytest.raises(ValueError, match="max_overlap"):
        validate_profile(dict(SMALL, required=three))
    with pytest.raises(ValueError, match="pin_revision: must be true or false"):
        validate_profile(dict(SMALL, pin_revision="yes"))
    late = dict(SMALL, required=[{"start_s": 20, "duration_s": 3, "kind": "pause", "target": "worker-a1"}])
    with pytest.raises(ValueError, match=r"required\[0\] \(pause worker-a1\) ends at 23.0s.*too short"):
        generate(1, late, 27)
    assert {"start_s": 20.0, "duration_s": 3.0, "kind": "pause", "target": "worker-a1", "params": {}} in \
        generate(1, late, 28)
