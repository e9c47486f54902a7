"""CURVE steps: intruder hives without a listed key, and what they heard and what was counted."""
from behave import then, when

KEYS = {"no": "none", "an unlisted": "stranger", "the run's": "client"}


@when('an intruder hive with {key} key registers an idle worker from {where}')
def step_intruder(context, key, where):
    context.world.intruders.impersonate(KEYS[key], where)


@then("no intruder completed a handshake, heard a frame or was listed in /v1/workers")
def step_intruders_refused(context):
    assert not context.world.intruders.admitted(), f"intruders admitted: {context.world.intruders.admitted()}"


@then("the orchestrator counted every intruder's refusal by its reason")
def step_intruders_counted(context):
    assert not context.world.intruders.uncounted(), f"refusals not counted: {context.world.intruders.uncounted()}"
