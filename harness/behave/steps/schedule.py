"""Generic soak steps over harness/behave/schedule.py: play the generator's seeded fault schedule against the
stack (while a suite's workload runs), then prove it played."""
from behave import step

from harness.behave.schedule import check_played, play_seeded


@step('the generator\'s fault schedule from "{profile}" plays for {seconds:g} seconds with the run\'s seed')
def play_run_seed(context, profile, seconds):
    """When the generator's fault schedule from "soak-profile.yml" plays for 36 seconds with the run's seed"""
    play_seeded(context.world, profile, seconds)


@step('the generator\'s fault schedule from "{profile}" plays for {seconds:g} seconds with seed {seed:d}')
def play_given_seed(context, profile, seconds, seed):
    """When the generator's fault schedule from "soak-profile.yml" plays for 36 seconds with seed 7"""
    play_seeded(context.world, profile, seconds, seed)


@step("the schedule played at least {n:d} faults, each proved in effect")
def schedule_played(context, n):
    """Then the schedule played at least 4 faults, each proved in effect"""
    check_played(context.world, n)
