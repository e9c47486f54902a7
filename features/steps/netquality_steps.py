"""Link-quality steps (features/netquality.feature): one line each over apiary_suite.netquality (Toxiproxy's
toxics on one link of the stack, steered through the harness's proxy while active)."""
from behave import then, when

from apiary_suite.netquality_front import record


@when('the link "{link}" gets {ms:d} ms of latency each way')
def step_latency(context, link, ms):
    context.world.netquality.degrade("latency", link, latency=ms)


@then("the latency is in effect on the link within {s:g} seconds")
def step_verified(context, s):
    context.world.netquality.verified(s)


@then('completions on hive "{hive}" are slower than on hive "{other}" by about {ms:d} ms')
def step_slower(context, hive, other, ms):
    context.world.netquality.slower_by(hive, other, ms / 1000, jobs=12, tokens=4)


@then('completions on hive "{hive}" take about as long as on hive "{other}"')
def step_as_fast(context, hive, other):
    context.world.netquality.as_fast(hive, other, jobs=12, tokens=4, slack_s=0.1)


@then("no hive or worker was declared lost since the latency began")
def step_no_loss(context):
    lost = context.world.netquality.losses()
    assert not lost, f"losses declared under a tolerable latency: {lost}"


@then('a "hive.lost" event for hive "{hive}" is published within {s:g} seconds of the heartbeat expiry')
def step_lost_after_expiry(context, hive, s):
    context.world.netquality.lost_after_toxics(hive, s)


@when("the link is healed")
def step_heal(context):
    context.world.netquality.heal()


@when('the link "{link}" runs through the proxy')
def step_steer(context, link):
    context.world.netquality.steer(link)


@when('the link "{link}" is blackholed')
def step_blackhole(context, link):
    context.world.netquality.degrade("blackhole", link)


@then("the blackhole is in effect on the link within {s:g} seconds")
def step_blackhole_verified(context, s):
    context.world.netquality.verified(s)


@then('a "worker.lost" event for worker "{worker}" is published within {s:g} seconds of the heartbeat expiry')
def step_worker_lost_after_expiry(context, worker, s):
    after = context.world.netquality.lost_after_toxics(worker, s, topic="worker.lost", field="worker_id")
    record(context.world, "blackhole_detected", {"worker": worker, "lost_after_s": round(after, 3)})


@when('the link "{link}" is reset {ms:d} ms after data flows')
def step_reset_peer(context, link, ms):
    context.world.netquality.degrade("reset_peer", link, timeout=ms)


@then("the reset is in effect on the link within {s:g} seconds")
def step_reset_verified(context, s):
    context.world.netquality.verified(s)


@then("the resets reached the hive's connection: it reconnected through the proxy at least once")
def step_reset_reached(context):
    f = record(context.world, "reset_peer", context.world.netquality.reset_outcome())
    assert f["service_links_accepted"] >= 2, f"the hive never reconnected through the proxy: {f}"
