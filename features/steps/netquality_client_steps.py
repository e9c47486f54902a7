"""Steps of features/netquality.client.feature: one line each over apiary_suite.netquality_front (toxics on the
stack's host-loopback paths: the client -> HTTP API path and the event PUB link)."""
from behave import then, when

from apiary_suite import netquality_front as front


@when("a {n:d}-token stream runs directly and, at the same time, through a proxy capping the client's downstream at {rate:g} KB/s, with a {s:g} s deadline")
def step_capped_stream(context, n, rate, s):
    context.world.vars["capped"] = front.stream_side_by_side(context.world, rate, n, s)


@then("the capped stream's tokens arrived over at least {k:g} times as long as the direct stream's, at about {rate:g} KB/s")
def step_capped_slower(context, k, rate):
    f = front.record(context.world, "capped_stream", front.capped_figures(context.world.vars["capped"]))
    assert f["capped_spread_s"] >= k * max(f["direct_spread_s"], 0.05), f"capped stream not {k}x slower: {f}"
    assert 0.5 * rate <= f["capped_kb_s"] <= 1.15 * rate, f"capped stream not at about {rate} KB/s: {f}"


@then("both streams ended with [DONE] and the exact text, one token per chunk in order")
def step_streams_intact(context):
    r = context.world.vars["capped"]
    bad = {k: p for k in ("direct", "capped") if (p := front.stream_problems(r[k]))}
    assert not bad, f"streams not intact: {bad}"


@then("both streams ended before their deadline and neither job timed out")
def step_no_timeout(context):
    r = context.world.vars["capped"]
    late = {k: r[k].latency for k in ("direct", "capped") if r[k].latency >= r["deadline_s"]}
    assert not late, f"streams ended after the {r['deadline_s']}s deadline: {late}"
    for k in ("direct", "capped"):
        job = context.world.job(r[k].job_id, r[k].tenant)
        assert job.get("state") == "completed", f"{k} job {r[k].job_id}: {job}"


@when("{n:d} completions of {t:d} tokens run {r:d} times, to measure their latency")
def step_baseline_latency(context, n, t, r):
    context.world.vars["sub_base"] = [x for _ in range(r) for x in front.completion_latencies(context.world, n, t)]


@when("an event subscriber connects through a proxy capping its downstream at {rate:g} KB/s")
def step_slow_subscriber(context, rate):
    context.world.vars["slow_sub"] = front.SlowSubscriber(context.world, rate)


@when("{n:d} completions of {t:d} tokens run {r:d} times with the slow subscriber connected")
def step_loaded_latency(context, n, t, r):
    context.world.vars["sub_load"] = [x for _ in range(r) for x in front.completion_latencies(context.world, n, t)]


@when("completions run until the harness's direct subscriber has seen {n:d} events since the cap, within {s:g} seconds")
def step_event_burst(context, n, s):
    context.world.vars["burst"] = front.record(context.world, "slow_subscriber_burst", context.world.vars["slow_sub"].burst(n, s))


@then("the slow subscriber is behind the harness's direct subscriber, receiving at most about {rate:g} KB/s")
def step_subscriber_behind(context, rate):
    lag = front.record(context.world, "slow_subscriber", {**context.world.vars["slow_sub"].lag(), "cap_kb_s": rate})
    assert lag["slow"] < lag["direct"], f"the capped subscriber is not behind: {lag}"
    assert lag["bytes"] / 1000 / lag["since_cap_s"] <= 1.15 * rate, f"the subscriber's link passed more than {rate} KB/s: {lag}"


@when("the cap on the slow subscriber is lifted")
def step_lift_cap(context):
    context.world.vars["last_seq"] = context.world.vars["slow_sub"].lift()


@then("the slow subscriber catches up within {s:g} seconds, its seq gaps counting the events it missed")
def step_caught_up(context, s):
    context.world.vars["gaps"] = front.check_gaps_counted(context.world, context.world.vars["slow_sub"].caught_up(context.world.vars["last_seq"], s))


@then("every event the slow subscriber missed reached the harness's direct subscriber, which has no gap")
def step_missed_reached_direct(context):
    front.check_direct_whole(context.world.vars["gaps"])


@then("the completions kept their latency with the slow subscriber connected")
def step_latency_kept(context):
    base, load = front.median(context.world.vars["sub_base"]), front.median(context.world.vars["sub_load"])
    front.record(context.world, "slow_subscriber_latency", {"median_before_s": round(base, 4), "median_with_s": round(load, 4)})
    assert load <= 1.5 * base + 0.15, f"median completion latency {load * 1000:.0f} ms with the slow subscriber, {base * 1000:.0f} ms before"
