"""Shrink: ddmin finds a known minimal failing subset, shortens durations, honours budgets and caches runs."""
import random

import pytest

from harness.nemesis.shrink import shrink


def faults(n, duration=3.0):
    """Return n faults on distinct targets t0..t(n-1), one per second."""
    return [{"start_s": float(i), "duration_s": duration, "kind": "pause", "target": f"t{i}", "params": {}}
            for i in range(n)]


class Oracle:
    """A fake replay: fails iff every needed target is present; records every call it gets."""

    def __init__(self, needed, rng=None, fail_rate=1.0):
        self.needed, self.rng, self.fail_rate, self.calls = set(needed), rng, fail_rate, []

    def __call__(self, schedule):
        starts = [f["start_s"] for f in schedule]
        assert starts == sorted(starts), "oracle got faults out of the original order"
        self.calls.append(frozenset((f["target"], f["duration_s"]) for f in schedule))
        hit = self.needed <= {f["target"] for f in schedule}
        return hit and (self.rng is None or self.rng.random() < self.fail_rate)


def targets(result):
    return [f["target"] for f in result["schedule"]]


def test_finds_exactly_the_two_faults_that_matter_out_of_30():
    oracle = Oracle({"t3", "t17"})
    result = shrink(faults(30), oracle, shorten=False)
    assert targets(result) == ["t3", "t17"] and result["minimal"] is True
    assert result["original_size"] == 30 and result["runs"] == len(oracle.calls) <= 64
    assert len(result["steps"]) == result["runs"]
    assert all(set(s) >= {"size", "failed", "kept"} for s in result["steps"])
    assert any(s["kept"] for s in result["steps"]) and result["steps"][-1]["size"] >= 1


def test_result_is_one_minimal():
    oracle = Oracle({"t5", "t6", "t30"})
    result = shrink(faults(40), oracle, shorten=False)
    assert targets(result) == ["t5", "t6", "t30"]
    for i in range(len(result["schedule"])):
        assert not oracle(result["schedule"][:i] + result["schedule"][i + 1:])


def test_cache_never_runs_a_subset_twice():
    oracle = Oracle({"t1", "t8", "t9"})
    result = shrink(faults(16), oracle)
    assert len(oracle.calls) == len(set(oracle.calls)) == result["runs"]


def test_shortens_durations_while_the_check_still_fails():
    schedule = faults(12, duration=9.0)

    def needs_long_t4(s):
        return any(f["target"] == "t4" and f["duration_s"] >= 2.0 for f in s)
    result = shrink(schedule, needs_long_t4)
    assert [(f["target"], f["duration_s"]) for f in result["schedule"]] == [("t4", 2.25)]   # 9 -> 4.5 -> 2.25
    assert result["minimal"] and [s["phase"] for s in result["steps"]][-3:] == ["shorten"] * 3
    assert result["schedule"][0]["start_s"] == 4.0 and schedule[4]["duration_s"] == 9.0      # input untouched


def test_shortening_stops_at_the_floor_and_can_be_turned_off():
    result = shrink(faults(6), Oracle({"t2"}), floor_s=0.5)
    assert [(f["target"], f["duration_s"]) for f in result["schedule"]] == [("t2", 0.5)]
    result = shrink(faults(6), Oracle({"t2"}), shorten=False)
    assert result["schedule"][0]["duration_s"] == 3.0


def test_flaky_oracle_still_converges_to_a_small_set():
    for seed in range(10):
        oracle = Oracle({"t3", "t17"}, rng=random.Random(seed), fail_rate=0.9)
        result = shrink(faults(30), oracle, shorten=False)
        assert {"t3", "t17"} <= set(targets(result)) and len(result["schedule"]) <= 4, (seed, targets(result))


def test_thirty_plus_faults_shrink_to_three_or_fewer_within_budget():
    result = shrink(faults(36), Oracle({"t7", "t21", "t33"}), max_runs=64, shorten=False)
    assert targets(result) == ["t7", "t21", "t33"] and result["minimal"] and result["runs"] <= 64
    result = shrink(faults(36), Oracle({"t7", "t21", "t33"}), max_runs=64)    # shortening uses up the budget
    assert len(result["schedule"]) == 3 and result["runs"] == 64 and result["minimal"] is False


def test_max_runs_is_honoured_and_the_result_still_fails():
    for budget in (5, 12):
        oracle = Oracle({"t3", "t17"})
        result = shrink(faults(30), oracle, max_runs=budget)
        assert len(oracle.calls) == result["runs"] == budget and result["minimal"] is False
        assert Oracle({"t3", "t17"})(result["schedule"])                 # the smallest failing one so far
    assert len(result["schedule"]) < 30


def test_deadline_zero_runs_nothing():
    oracle = Oracle({"t1"})
    lines = []
    result = shrink(faults(8), oracle, deadline_s=0, log=lines.append)
    assert oracle.calls == [] and result["minimal"] is False and len(result["schedule"]) == 8
    assert any("deadline" in line for line in lines)


def test_confirm_reports_a_schedule_that_does_not_reproduce():
    result = shrink(faults(8), lambda s: False, confirm=True)
    assert result["reproduced"] is False and result["minimal"] is False and result["runs"] == 1
    assert len(result["schedule"]) == 8
    assert shrink(faults(8), Oracle({"t1"}), confirm=True)["reproduced"] is True


def test_trivial_inputs_and_bad_arguments():
    assert shrink([], Oracle(set()))["schedule"] == []
    one = shrink(faults(1), Oracle({"t0"}), shorten=False)
    assert one["runs"] == 0 and targets(one) == ["t0"]
    with pytest.raises(ValueError):
        shrink(faults(3), Oracle({"t0"}), max_runs=-1)


def test_oracle_errors_propagate():
    def broken(_schedule):
        raise RuntimeError("replay could not start the stack")
    with pytest.raises(RuntimeError, match="could not start"):
        shrink(faults(4), broken)
