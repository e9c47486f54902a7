"""wait_until: returns the first truthy value, names what did not happen, scales with the multiplier."""
import time

import pytest

from harness.wait import WaitTimeout, scaled, wait_until


def test_returns_first_truthy_value():
    values = iter([0, None, "", 7])
    assert wait_until(lambda: next(values), 1, 0.001) == 7


def test_timeout_names_what_did_not_happen():
    with pytest.raises(WaitTimeout, match=r"hive-a rejoined within 0\.05s \(last observed: False\)"):
        wait_until(lambda: False, 0.05, 0.01, "hive-a rejoined")


def test_exceptions_count_as_not_yet_and_are_reported():
    def boom():
        raise ConnectionError("refused")
    with pytest.raises(WaitTimeout, match="refused"):
        wait_until(boom, 0.05, 0.01, "api up")


def test_multiplier_scales_the_deadline(monkeypatch):
    monkeypatch.setenv("APIARY_TIMEOUT_MULTIPLIER", "3")
    assert scaled(2) == 6
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match="within 0.15s"):
        wait_until(lambda: False, 0.05, 0.01, "x")
    assert time.monotonic() - start >= 0.14


def test_unscaled_when_asked(monkeypatch):
    monkeypatch.setenv("APIARY_TIMEOUT_MULTIPLIER", "50")
    with pytest.raises(WaitTimeout, match="within 0.05s"):
        wait_until(lambda: False, 0.05, 0.01, "x", scale=False)


def test_is_an_assertion_error_so_steps_fail_not_error():
    assert issubclass(WaitTimeout, AssertionError)
