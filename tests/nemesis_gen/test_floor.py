"""Generator: the min_faults_per_min floor (every seed of a short soak meets the gate's fault rate)."""
import copy

import pytest

from harness.nemesis.generator import generate, load_profile, validate_profile
from tests.nemesis_gen.test_required import SMALL


def test_every_seed_of_the_ci_soak_draws_enough_faults_for_the_gate():
    prof = load_profile("ci")
    counts = [len(generate(seed, prof, 50, "rev")) for seed in range(300)]
    assert min(counts) >= 10, f"a 50 s ci soak drew {min(counts)} faults, below 12/min"


def test_without_the_floor_the_same_profile_draws_short_schedules():
    prof = copy.deepcopy(load_profile("ci"))
    del prof["min_faults_per_min"]
    short = [s for s in range(300) if len(generate(s, prof, 50, "rev")) < 10]
    assert short, "no seed fell short without the floor: this test no longer shows what the floor is for"
    floored = load_profile("ci")
    assert all(len(generate(s, floored, 50, "rev")) >= 10 for s in short)
    assert generate(short[0], floored, 50, "rev") == generate(short[0], load_profile("ci"), 50, "rev")


def test_the_floor_is_part_of_the_seed_and_every_draw_meets_it():
    floored = dict(SMALL, min_faults_per_min=1)
    assert generate(42, floored, 300, "abc") != generate(42, SMALL, 300, "abc")   # the key is part of the seed
    low = [generate(s, floored, 300, "abc") for s in range(5)]
    assert all(len(x) >= 5 for x in low)


def test_an_unreachable_floor_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="min_faults_per_min.*raise rate_per_min"):
        generate(1, dict(SMALL, min_faults_per_min=500), 60, "r")


@pytest.mark.parametrize("bad", [0, -3, "many", True, float("nan")])
def test_a_bad_floor_is_rejected_naming_the_key(bad):
    with pytest.raises(ValueError, match="min_faults_per_min: must be a number > 0"):
        validate_profile(dict(SMALL, min_faults_per_min=bad))
