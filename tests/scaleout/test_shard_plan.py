"""The shard plan over the repo's real @integration selection: LPT balance, determinism, @fresh_stack
features kept whole, every scenario in exactly one shard, `i/N` parsing, fingerprints and history."""
import json
import os

import pytest

from harness import selection, shard_plan
from harness.shard_plan import plan_shards, split_for_matrix, unit_key


@pytest.fixture(scope="module")
def items():
    """The scenarios `--tags @integration` selects in this checkout."""
    found = selection.select(selection.make_selection([], ["@integration"], []))
    assert len(found) >= 10, "the repo's @integration selection is too small to shard"
    return found


def makespan(bins, durations):
    """The wall time of the slowest shard."""
    return max(sum(durations[unit_key(i)] for i in b) for b in bins)


def assert_partition(bins, items):
    """Every selected scenario in exactly one bin, and nothing else."""
    flat = [(i.path, i.line) for b in bins for i in b]
    assert len(flat) == len(set(flat)), "a scenario is planned twice"
    assert set(flat) == {(i.path, i.line) for i in items}


def skewed(items, heavy_every=3):
    """Every `heavy_every`-th scenario in location order takes 100 s, the rest 1 s (round-robin's worst case)."""
    ordered = sorted(items, key=lambda i: (i.path, i.line))
    return {unit_key(i): (100.0 if k % heavy_every == 0 else 1.0) for k, i in enumerate(ordered)}


def test_lpt_beats_round_robin_on_skewed_durations(items):
    durations = skewed(items)
    lpt = plan_shards(items, 3, durations)
    rr = [split_for_matrix(items, i, 3) for i in (1, 2, 3)]
    total, longest = sum(durations.values()), max(durations.values())
    assert makespan(lpt, durations) < 0.8 * makespan(rr, durations)
    assert makespan(lpt, durations) <= total / 3 + longest      # Graham's bound for LPT


def test_matrix_split_with_durations_is_the_lpt_plan(items):
    durations = skewed(items)
    lpt = plan_shards(items, 3, durations)
    assert [split_for_matrix(items, i, 3, durations) for i in (1, 2, 3)] == lpt


def test_plan_is_deterministic_whatever_the_input_order(items):
    durations = skewed(items)
    first = plan_shards(items, 4, durations)
    assert plan_shards(list(reversed(items)), 4, dict(reversed(list(durations.items())))) == first
    assert plan_shards(items, 4, {}) == plan_shards(list(reversed(items)), 4, {})   # all ties: broken by location
    assert [split_for_matrix(list(reversed(items)), i, 4) for i in range(1, 5)] == \
           [split_for_matrix(items, i, 4) for i in range(1, 5)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_every_scenario_lands_in_exactly_one_shard(items, n):
    bins = plan_shards(items, n, skewed(items))
    assert len(bins) == n and all(bins)
    assert_partition(bins, items)
    assert all(b == sorted(b, key=lambda i: (i.path, i.line)) for b in bins), "a shard is not in file order"
    for durations in (None, skewed(items)):
        assert_partition([split_for_matrix(items, i, n, durations) for i in range(1, n + 1)], items)


def test_zero_durations_still_fill_every_shard(items):
    bins = plan_shards(items, 5, {unit_key(i): 0.0 for i in items})
    assert len(bins) == 5 and all(bins)


def test_more_shards_than_scenarios_gives_fewer_bins(items):
    few = items[:3]
    bins = plan_shards(few, 5, {})
    assert len(bins) == 3 and all(len(b) == 1 for b in bins)
    assert split_for_matrix(few, 5, 5, {}) == [] and split_for_matrix(few, 4, 5) == []


SHARED = """@fresh_stack
Feature: Shared
  Scenario: s1
    Given a
  Scenario: s2
    Given a
  Scenario: s3
    Given a
"""
LOOSE = """Feature: Loose
  @fresh_stack
  Scenario: l1
    Given a
  Scenario: l2
    Given a
  Scenario: l3
    Given a
"""


def scratch_items(tmp_path):
    """Items of a scratch tree: a feature tagged @fresh_stack at feature level, one tagged on a scenario."""
    feats = tmp_path / "features"
    feats.mkdir()
    (feats / "a_shared.feature").write_text(SHARED)
    (feats / "b_loose.feature").write_text(LOOSE)
    return selection.select(selection.make_selection([str(feats)], [], [], root=tmp_path), root=tmp_path)


def test_feature_level_fresh_stack_stays_in_one_shard(tmp_path):
    items = scratch_items(tmp_path)
    assert len(items) == 6
    bins = plan_shards(items, 4, {}, root=tmp_path)
    holding = [k for k, b in enumerate(bins) if any(i.feature == "Shared" for i in b)]
    assert len(holding) == 1 and sum(i.feature == "Shared" for i in bins[holding[0]]) == 3
    loose_bins = {k for k, b in enumerate(bins) for i in b if i.feature == "Loose"}
    assert len(loose_bins) == 3, "a scenario-level @fresh_stack must not glue its feature together"
    for k in range(1, 5):
        part = split_for_matrix(items, k, 4, root=tmp_path)
        assert sum(i.feature == "Shared" for i in part) in (0, 3)


def test_unit_of_a_whole_feature_is_planned_by_its_total_time(tmp_path):
    items = scratch_items(tmp_path)
    durations = {unit_key(i): (30.0 if i.feature == "Shared" else 20.0) for i in items}
    bins = plan_shards(items, 2, durations, root=tmp_path)   # Shared = 90 s alone; Loose 3 x 20 s together
    assert sorted(len(b) for b in bins) == [3, 3] and {i.feature for i in bins[0]} != {i.feature for i in bins[1]}


def test_unknown_durations_are_guessed():
    one = selection.Item("F", "known", "f.feature", 3, ())
    two = selection.Item("F", "other", "f.feature", 5, ())
    assert shard_plan.guess_for_unknown([one, two], {unit_key(one): 40.0}, 7) == 7.0
    assert shard_plan.guess_for_unknown([one, two], {unit_key(one): 40.0, "F › gone": 2.0}, None) == 40.0
    assert shard_plan.guess_for_unknown([two], {"F › gone": 2.0, "F › away": 4.0}, None) == 3.0
    assert shard_plan.guess_for_unknown([two], {}, None) == 10.0


@pytest.mark.parametrize("text,expected", [("2/4", (2, 4)), (" 1 / 1 ", (1, 1)), ("4/4", (4, 4))])
def test_parse_shard_accepts_i_of_n(text, expected):
    assert shard_plan.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "2of4", "2/0", "", "-1/3", "1/2/3"])
def test_parse_shard_rejects_naming_the_text(text):
    with pytest.raises(ValueError) as exc:
        shard_plan.parse_shard(text)
    assert repr(text) in str(exc.value)


@pytest.mark.parametrize("index,count", [(0, 3), (4, 3), (1, 0), (True, 2), ("1", 2)])
def test_split_for_matrix_rejects_bad_i_of_n(items, index, count):
    with pytest.raises(ValueError):
        split_for_matrix(items, index, count)


def test_fingerprint_names_the_selection_not_its_order(items):
    fp = shard_plan.fingerprint(items)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert shard_plan.fingerprint(list(reversed(items))) == fp
    assert shard_plan.fingerprint(items[1:]) != fp


def test_shard_meta_records_the_plan(items):
    bins = plan_shards(items, 2, {})
    meta = shard_plan.shard_meta(2, 2, bins[1], items, "unix:///run/engine-b.sock")
    assert (meta["index"], meta["count"], meta["engine"]) == (2, 2, "unix:///run/engine-b.sock")
    assert meta["fingerprint"] == shard_plan.fingerprint(items) and meta["selection_size"] == len(items)
    assert [p["location"] for p in meta["planned"]] == [i.location for i in bins[1]]
    assert set(meta["planned"][0]) == {"feature", "scenario", "location", "tags"}
    json.dumps(meta)    # it goes into summary.json


def write_summary(path, scenarios, mtime, **extra):
    """A summary.json holding these scenarios, dated `mtime`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps({"run_id": path.name, "scenarios": scenarios, **extra}))
    os.utime(path / "summary.json", (mtime, mtime))


def rec(name, elapsed=None, duration=1.0, status="passed"):
    """A summary.json scenario record of feature F."""
    out = {"feature": "F", "scenario": name, "status": status, "duration_s": duration, "tags": []}
    if elapsed is not None:
        out["elapsed_s"] = elapsed
    return out


def test_history_durations_take_the_median_of_the_newest_runs(tmp_path):
    reports = tmp_path / "reports"
    write_summary(reports / "r1", [rec("a", 100.0)], 1000)              # oldest: beyond limit=3
    write_summary(reports / "r2", [rec("a", 10.0), rec("b", None, 4.0)], 2000)
    write_summary(reports / "r3", [rec("a", 20.0), rec("c", 9.0, status="skipped")], 3000)
    write_summary(reports / "r4" / "shards" / "1", [rec("a", 30.0), rec("b", float("nan")), rec("b", -1.0),
                                                    rec("b", "slow"), {"scenario": "x"}, "junk"], 4000)
    write_summary(reports / "r4", [rec("a", 999.0)], 4500, mode="merged")      # the shards' union: counted via shards/
    write_summary(reports / "r5", [], 5000, environment_error="no engine")       # no scenarios: not counted
    (reports / "r6").mkdir()
    (reports / "r6" / "summary.json").write_text("{not json")
    (reports / "r7").mkdir()
    (reports / "r7" / "summary.json").write_text('["a list"]')
    (reports / "latest").symlink_to("r4")
    got = shard_plan.history_durations(reports, limit=3)
    assert got == {"F › a": 20.0, "F › b": 4.0}
    assert shard_plan.history_durations(reports, limit=10)["F › a"] == 25.0
    assert shard_plan.history_durations(tmp_path / "nowhere") == {}


def test_read_durations_checks_the_file(tmp_path):
    good = tmp_path / "d.json"
    good.write_text(json.dumps({"F › a": 3, "F › b": 2.5}))
    assert shard_plan.read_durations(good) == {"F › a": 3.0, "F › b": 2.5}
    for text, words in (("{", "not valid JSON"), ("[1]", "JSON object"), ('{"F › a": -2}', "'F › a'")):
        good.write_text(text)
        with pytest.raises(ValueError, match=words) as exc:
            shard_plan.read_durations(good)
        assert str(good) in str(exc.value)
    with pytest.raises(ValueError, match="cannot be read"):
        shard_plan.read_durations(tmp_path / "missing.json")
