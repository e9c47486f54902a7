"""ComposeStack.pause: a 500 from the engine's freeze (seen under load in a CI soak) is tried again, a
bounded number of times; other errors, and the last failure, reach the caller with the engine's words."""
import docker
import pytest
from requests import Response

from harness.stack import compose


class Box:
    """A container whose pause() fails with the given API errors, in order, then succeeds."""

    def __init__(self, errors):
        self.errors, self.calls = list(errors), 0

    def pause(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Server Error", response=response, explanation=explanation)


def stack_with(box, monkeypatch):
    stack = compose.ComposeStack.__new__(compose.ComposeStack)
    monkeypatch.setattr(stack, "container", lambda service: box, raising=False)
    monkeypatch.setattr(compose, "PAUSE_RETRY_S", 0.0)
    return stack


def test_a_failed_freeze_is_tried_again_and_then_holds(monkeypatch):
    box = Box([api_error(500, "unable to freeze"), api_error(500, "unable to freeze")])
    stack_with(box, monkeypatch).pause("worker-b2")
    assert box.calls == 3


def test_a_freeze_that_keeps_failing_raises_the_engines_error_after_the_last_try(monkeypatch):
    box = Box([api_error(500, "unable to freeze")] * 5)
    with pytest.raises(docker.errors.APIError, match="unable to freeze"):
        stack_with(box, monkeypatch).pause("worker-b2")
    assert box.calls == compose.PAUSE_TRIES


@pytest.mark.parametrize("status, words", [(409, "is not running"), (500, "already paused"), (404, "No such container")])
def test_other_errors_are_not_retried(monkeypatch, status, words):
    box = Box([api_error(status, words)])
    with pytest.raises(docker.errors.APIError, match=words):
        stack_with(box, monkeypatch).pause("worker-b2")
    assert box.calls == 1
