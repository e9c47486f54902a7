"""Steps of the chaos soaks (@soak): each runs or questions apiary_suite.soak_suite.Soaks for the scenario.
Every Then reads what the soaks observed: checker verdicts, recovery times, availability, fault proofs."""
from behave import then, when


@when('a {seconds:d}-second soak runs under the "{profile}" profile with the release seed {seed:d} and the run\'s fresh seed')
def step_soak_two_seeds(context, seconds, profile, seed):
    context.world.soaks.run([seed, context.world.soaks.fresh_seed], profile, seconds, label=context.scenario.name)


@when('a {seconds:d}-second soak runs under the "{profile}" profile with seed {seed:d} and the deliberate bug "{bug}"')
def step_soak_with_bug(context, seconds, profile, seed, bug):
    context.world.soaks.run([seed], profile, seconds, bug=bug, label=context.scenario.name)


@then("every fault of every soak proved it took effect")
def step_faults_verified(context):
    assert not (bad := context.world.soaks.failed_checks("faults-verified")), f"faults without proof: {bad}"


@then("the independent checker judges every soak valid")
def step_all_valid(context):
    assert not (bad := context.world.soaks.failed_checks("checker")), f"checker: {bad} (anomalies in <run>/soaks/*/verdict.json)"


@then('the independent checker judges the last soak invalid with a "{kind}" anomaly')
def step_last_invalid(context, kind):
    s = context.world.soaks
    assert s.results[-1]["verdict"]["valid"] is False and s.anomalies(kind), f"verdict {s.verdicts()}, {kind}: {s.anomalies(kind)[:3]}"


@then("every soak recovered within the gate's recovery limit")
def step_recovered(context):
    assert not (bad := context.world.soaks.failed_checks("recovery")), f"not recovered: {bad}"


@then("every soak kept the gate's availability during faults")
def step_available(context):
    assert not (bad := context.world.soaks.failed_checks("availability")), f"availability: {bad}"


@then("every soak carried at least {rps:d} requests a second and {per_min:d} faults a minute")
def step_load_and_rate(context, rps, per_min):
    assert not (low := context.world.soaks.below(rps, per_min)), f"soaks below {rps} req/s or {per_min} faults/min: {low}"


@then("shrinking the last soak within {runs:d} replays and {seconds:d} seconds leaves at most {n:d} faults that still fail the same check")
def step_shrunk(context, runs, seconds, n):
    found = context.world.soaks.shrink_last(runs, seconds)
    assert found["shrunk_faults"] <= n and any(c["failed_same_check"] for c in found["candidates"]), f"shrink: {found['original_faults']} -> {found['shrunk_faults']} faults, runs {[(c['faults'], c['failed_same_check']) for c in found['candidates']]}"


@then("the last soak applied at least {n:d} faults")
def step_last_applied(context, n):
    assert (got := context.world.soaks.results[-1]["faults_applied"]) >= n, f"the last soak applied {got} faults"
