"""Generic readiness steps: every service of the stack alive and answering its x-apiary health check."""
from __future__ import annotations

from behave import step

from harness.errors import EnvironmentSetupError


def healthy_within(context, seconds: float) -> None:
    """wait_healthy (scaled by the timeout multiplier) as an assertion naming the sick services."""
    try:
        context.world.stack.wait_healthy(seconds, scale=True)
    except EnvironmentSetupError as exc:
        raise AssertionError(f"{exc.what}: {exc.detail}") from None


@step("the stack is healthy within {seconds:g} seconds")
def stack_healthy(context, seconds):
    """Given the stack is healthy within 60 seconds"""
    healthy_within(context, seconds)


@step("every service is healthy within {seconds:g} seconds")
def every_service_healthy(context, seconds):
    """Then every service is healthy within 30 seconds"""
    healthy_within(context, seconds)
