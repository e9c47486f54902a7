"""Self-test step: fails on a real observation (the orchestrator's /health never answers 599)."""
import requests
from behave import then, when


@then("the orchestrator's /health answers {code:d}")
def step_health_answers(context, code):
    assert (got := requests.get(context.cluster.api_url + "/health", timeout=5).status_code) == code, f"GET /health answered {got}, expected {code}"


@when('a Python traceback is written to the log of "{service}"')
def step_write_traceback(context, service):
    context.cluster.exec(service, ["sh", "-c", "printf 'Traceback (most recent call last):\\n  selftest\\nRuntimeError: selftest\\n' > /proc/1/fd/2"], user="apiary")
