"""Self-test steps: fail on a real observation (the orchestrator's /health never answers 599), write a
traceback or a presented key into a service log, and break what the proofs observe (a buffering proxy,
a subscriber that stops early, a tenant holding another tenant's key)."""
import requests
from behave import given, then, when

from apiary_suite import proofs
from apiary_suite.buffering_proxy import route_through_buffering_proxy


@then("the orchestrator's /health answers {code:d}")
def step_health_answers(context, code):
    assert (got := requests.get(context.world.cluster.api_url + "/health", timeout=5).status_code) == code, f"GET /health answered {got}, expected {code}"


@when('a Python traceback is written to the log of "{service}"')
def step_write_traceback(context, service):
    context.world.cluster.exec(service, ["sh", "-c", "printf 'Traceback (most recent call last):\\n  selftest\\nRuntimeError: selftest\\n' > /proc/1/fd/2"], user="apiary")


@given("the API is reached through a proxy that buffers each response whole")
def step_buffering_proxy(context):
    route_through_buffering_proxy(context.world)


@when('subscriber "{name}" stops listening')
def step_subscriber_stops(context, name):
    context.world.subscribers[name].stop()


@when('tenant "{tenant}" presents the key of tenant "{owner}" from now on')
def step_share_key(context, tenant, owner):
    proofs.share_key(context.world.client, tenant, owner)


@when('the first presented wrong key is written to the log of "{service}"')
def step_write_wrong_key(context, service):
    context.world.cluster.exec(service, ["sh", "-c", f"printf 'selftest: presented key %s\\n' '{next(iter(context.world.vars['wrong_keys']))}' > /proc/1/fd/2"], user="apiary")
