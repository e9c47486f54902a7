"""Link-quality steps (features/netquality.feature): one line each over harness.netquality (Toxiproxy's
toxics on one link of the stack, steered through the harness's proxy while active)."""
from behave import then, when

from harness.netquality import NetQuality


def nq(context) -> NetQuality:
    return NetQuality.of(context.world)


@when('the link "{link}" gets {ms:d} ms of latency each way')
def step_latency(context, link, ms):
    nq(context).degrade("latency", link, latency=ms)


@then("the latency is in effect on the link within {s:g} seconds")
def step_verified(context, s):
    nq(context).verified(s)


@then('completions on hive "{hive}" are slower than on hive "{other}" by about {ms:d} ms')
def step_slower(context, hive, other, ms):
    nq(context).slower_by(hive, other, ms / 1000, jobs=12, tokens=4)


@then('completions on hive "{hive}" take about as long as on hive "{other}"')
def step_as_fast(context, hive, other):
    nq(context).as_fast(hive, other, jobs=12, tokens=4, slack_s=0.1)


@then("no hive or worker was declared lost since the latency began")
def step_no_loss(context):
    lost = nq(context).losses()
    assert not lost, f"losses declared under a tolerable latency: {lost}"


@then('a "hive.lost" event for hive "{hive}" is published within {s:g} seconds of the heartbeat expiry')
def step_lost_after_expiry(context, hive, s):
    nq(context).lost_after_toxics(hive, s)


@when("the link is healed")
def step_heal(context):
    nq(context).heal()


@when('the link "{link}" runs through the proxy')
def step_steer(context, link):
    nq(context).steer(link)
