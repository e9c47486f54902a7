"""Validation and security steps: raw request bodies, error bodies naming the field, rogue peers sending malformed frames."""
from behave import then, when

from apiary_suite.rogue import EXPECTED_CODE, MALFORMED_KINDS
from apiary_suite.world import error_of


@when("tenant \"{tenant}\" posts the body '{body}' to \"{path}\"")
def step_post_body(context, tenant, body, path):
    context.world.remember(context.world.client.post(path, tenant=tenant, data=body.encode(), headers={"Content-Type": "application/json"}))


@when('tenant "{tenant}" posts a valid completion padded to {n:d} bytes to "{path}"')
def step_post_large(context, tenant, n, path):
    context.world.remember(context.world.client.post(path, tenant=tenant, data=('{"model":"tinyllama","prompt":"' + "x" * n + '"}').encode(), headers={"Content-Type": "application/json"}))


@then('the error is an "{etype}" naming param "{param}"')
def step_error_param(context, etype, param):
    err = error_of(context.world.last())
    assert err.get("type") == etype and err.get("param") == param and err.get("message"), f"error body: {err}"


@then('the error is an "{etype}" with a message mentioning "{text}"')
def step_error_type_message(context, etype, text):
    err = error_of(context.world.last())
    assert err.get("type") == etype and text.lower() in str(err.get("message", "")).lower(), f"error body: {err}"


@when('a rogue peer sends every kind of malformed frame to "{target}"')
def step_rogue(context, target):
    context.world.vars["rogue"] = context.world.nemesis.rogue.send_malformed(target)


@then("the rogue peer got an ERROR naming each frame's defect")
def step_rogue_errors(context):
    wrong = {k: r for k, r in context.world.vars["rogue"].items() if not any(x.get("command") == "ERROR" and x["body"].get("code") == EXPECTED_CODE[k] for x in r)}
    assert not wrong, f"kinds without the expected ERROR reply: {wrong}"


@then('the "{service}" protocol error counter rose for every kind of malformed frame')
def step_rogue_counted(context, service):
    before = context.world.vars["metrics_before"][service]
    missing = [c for c in sorted({EXPECTED_CODE[k] for k in MALFORMED_KINDS}) if context.world.metric(service, "apiary_protocol_errors_total", reason=c) <= sum(v for (n, lab), v in before.items() if n == "apiary_protocol_errors_total" and ("reason", c) in lab)]
    assert not missing, f"{service} apiary_protocol_errors_total did not rise for reasons {missing}"
