"""Generic fault steps over harness.nemesis (for the chaos and partition suites): kill, pause, restart (process
verbs); partition, one-way drop and loss (fault-protocol kinds, recorded and verified); heal."""
from behave import then, when


@when('"{service}" is killed')
def step_kill(context, service):
    context.world.nemesis.proc.kill(service)


@when('"{service}" is killed with {signal}')
def step_kill_signal(context, service, signal):
    context.world.nemesis.proc.kill(service, signal=signal)


@when('"{service}" is paused')
def step_pause(context, service):
    context.world.nemesis.proc.pause(service)


@when('"{service}" is resumed')
def step_resume(context, service):
    context.world.nemesis.proc.resume(service)


@when('"{service}" is restarted')
def step_restart(context, service):
    context.world.vars["mark"] = context.world.events.mark()
    context.world.nemesis.proc.restart(service)


@when('"{service}" is started again')
def step_start(context, service):
    context.world.nemesis.proc.start(service)


@when('"{a}" is partitioned from "{b}"')
def step_partition(context, a, b):
    context.world.nemesis.net.partition(a, b)


@when('"{dst}" drops every packet from "{src}"')
def step_drop(context, dst, src):
    context.world.nemesis.net.drop(src, dst)


@when('"{service}" loses {pct:d}% of incoming packets')
def step_loss(context, service, pct):
    context.world.nemesis.net.loss(service, pct / 100)


@when("the network is healed")
def step_heal_network(context):
    context.world.nemesis.net.heal()


@when("every fault is healed")
def step_heal_all(context):
    assert not context.world.nemesis.heal_all(), "heal reported errors (see faults.jsonl)"


@then('"{service}" is {state} within {s:g} seconds')
def step_container_state(context, service, state, s):
    context.world.wait_until(lambda: str((context.world.cluster.inspect(service) or {}).get("status", "")).lower() == state, s, f"{service} {state}")
