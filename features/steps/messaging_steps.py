"""Messaging steps: extra event subscribers with topic filters, probe peers on the stack's networks (READY round trips)."""
from behave import given, then, when

from apiary_suite import proofs
from apiary_suite.events import find_gaps, in_order
from services import protocol


@given("these event subscribers listen to the orchestrator")
def step_subscribers(context):
    [context.world.subscribe(r["name"], tuple(t.strip() for t in r["topics"].split(",")) if r["topics"].strip() else ("",)) for r in context.table]
    context.world.vars["subscribers_joined_seq"] = proofs.next_seq([context.world.events, *context.world.subscribers.values()])


@then('subscriber "{name}" saw "{topic}" for each of the {n:d} requests within {s:g} seconds')
def step_sub_saw_all(context, name, topic, n, s):
    proofs.wait_no_problems(context.world, lambda: proofs.request_event_problems(context.world.client.completions, {e.get("job_id") for e in context.world.subscribers[name].matching(topic)}, n), s, f"subscriber {name} saw {topic} for each of {n} successful requests")


@then('subscriber "{name}" received every event in seq order with no gap')
def step_sub_no_gap(context, name):
    ev = context.world.subscribers[name].events
    assert ev and in_order(ev) and not find_gaps(ev), f"{name}: {len(ev)} events, gaps={find_gaps(ev)}, in_order={in_order(ev)}"


@then('subscriber "{name}" received only events whose topic starts with "{prefixes}"')
def step_sub_only(context, name, prefixes):
    stray = [e["topic"] for e in context.world.subscribers[name].events if not e["topic"].startswith(tuple(p.strip() for p in prefixes.split(",")))]
    assert context.world.subscribers[name].events and not stray, f"{name} got stray topics {sorted(set(stray))} or nothing"


@then('subscriber "{name}" received exactly the "{prefix}" events published since the subscribers joined, as "{ref}" saw them, within {s:g} seconds')
def step_sub_same(context, name, prefix, ref, s):
    proofs.wait_no_problems(context.world, lambda: proofs.subscriber_window_problems(context.world, name, prefix, ref), s, f"subscriber {name} did not get exactly the {prefix!r} events published since the subscribers joined")


# ---- probe peers (REQ/REP-style control round trips over TCP across containers) -------------
@when('a probe hive "{peer}" registers with the orchestrator and then disconnects')
def step_probe_hive(context, peer):
    context.world.vars["probe"] = context.world.nemesis.rogue.register("orchestrator", "hive", peer, workers=[], models=[])


@when('a probe worker "{peer}" registers with hive "{hive}" for model "{model}" and then disconnects')
def step_probe_worker(context, peer, hive, model):
    context.world.vars["probe"] = context.world.nemesis.rogue.register(hive, "worker", peer, model=model, models=[model], slots=1, free_slots=1, state="ready")


@when('a probe peer sends a HEARTBEAT to "{target}" without registering')
def step_probe_unregistered(context, target):
    context.world.vars["probe"] = context.world.nemesis.rogue.send(target, [protocol.encode(protocol.CAPACITY, {"worker_id": "nobody", "free_slots": 1, "state": "ready"})])[0]


@then('the probe got a READY acknowledgement from role "{role}"')
def step_probe_ack(context, role):
    assert any(r.get("command") == "READY" and r["body"].get("role") == role for r in context.world.vars["probe"]), f"probe replies: {context.world.vars['probe']}"


@then('the probe got a DISCONNECT with reason "{reason}"')
def step_probe_disconnect(context, reason):
    assert any(r.get("command") == "DISCONNECT" and r["body"].get("reason") == reason for r in context.world.vars["probe"]), f"probe replies: {context.world.vars['probe']}"
