"""The generator schedules the link-quality kinds (harness/nemesis/kinds_quality.py): every one is a registered
fault kind, profiles name them with one link each, their stream param is checked, the default profile draws
them with params the kinds accept, and the ci and selftest schedules stay as they were."""
from collections import Counter

import pytest

import harness.nemesis.protocol as protocol
from harness.nemesis import generator as gen
from harness.nemesis.generator import generate, load_profile, validate_profile

LINK = "orchestrator|hive-a"


def profile(kind: str, target=LINK, **params) -> dict:
    return {"rate_per_min": 30, "max_overlap": 2, "min_duration_s": 1, "max_duration_s": 3, "quiet_s": 5,
            "kinds": {kind: {"weight": 1, "targets": [target], "params": params}}}


def test_every_quality_kind_is_registered_and_a_link_kind():
    for kind in gen.QUALITY_KINDS:
        assert protocol.lookup(kind).name == kind
        assert kind in gen.DEFAULT_KINDS and kind in gen.LINK_KINDS
    assert set(gen.QUALITY_KINDS) == {k for k in gen.DEFAULT_KINDS if getattr(protocol.lookup(k), "toxic_type", "")}


@pytest.mark.parametrize("kind", gen.QUALITY_KINDS)
def test_a_profile_schedules_a_quality_kind(kind):
    schedule = generate(3, validate_profile(profile(kind, stream=["upstream", "both"])), 120)
    assert schedule and {f["kind"] for f in schedule} == {kind} and {f["target"] for f in schedule} == {LINK}
    assert {f["params"]["stream"] for f in schedule} <= {"upstream", "both"}


@pytest.mark.parametrize("target,words", [("hive-a", "needs a link target"), ("hive-a|*", "needs one link"),
                                          ("hive-a|hive-a", "needs a link target")])
def test_a_quality_kind_needs_one_link(target, words):
    with pytest.raises(ValueError, match=words):
        validate_profile(profile("latency", target=target))


def test_a_bad_stream_is_rejected_naming_the_key():
    with pytest.raises(ValueError, match=r"kinds\.bandwidth\.params\.stream.*sideways"):
        validate_profile(profile("bandwidth", stream="sideways"))


def test_the_default_profile_draws_quality_kinds_the_kinds_accept():
    schedule = generate(21, load_profile("default"), 1800, "rev")
    drawn = [f for f in schedule if f["kind"] in gen.QUALITY_KINDS]
    assert set(Counter(f["kind"] for f in drawn)) == set(gen.QUALITY_KINDS)
    for f in drawn:
        kind = protocol.lookup(f["kind"])
        kind.check_params(dict(f["params"]))          # NemesisError on a param the kind refuses
        assert "*" not in f["target"] and len(f["target"].split("|")) == 2


def test_ci_and_selftest_schedule_no_quality_kind():
    for name in ("ci", "selftest"):
        prof = load_profile(name)
        assert not set(prof["kinds"]) & set(gen.QUALITY_KINDS)
        assert not [f for s in range(5) for f in generate(s, prof, 180) if f["kind"] in gen.QUALITY_KINDS]
