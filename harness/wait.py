"""wait_until: poll a condition with short, growing intervals until a deadline scaled by the
timeout multiplier (env APIARY_TIMEOUT_MULTIPLIER); the error names what did not happen."""
from __future__ import annotations

import os
import time
from typing import Any, Callable


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline (an AssertionError so a step fails, not errors)."""


def timeout_multiplier() -> float:
    """The run's timeout multiplier (APIARY_TIMEOUT_MULTIPLIER, default 1, never below 0.1)."""
    try:
        return max(0.1, float(os.environ.get("APIARY_TIMEOUT_MULTIPLIER", "1") or 1))
    except ValueError:
        return 1.0


def scaled(seconds: float) -> float:
    """A time limit scaled by the timeout multiplier."""
    return seconds * timeout_multiplier()


def wait_until(condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.05,
               err_msg: str = "condition did not become true", max_interval_s: float = 0.2,
               scale: bool = True, swallow: tuple[type[BaseException], ...] = (Exception,)) -> Any:
    """Return the first truthy value of condition() before the (scaled) deadline, else raise WaitTimeout.

    Exceptions listed in `swallow` count as "not yet" and are reported with the timeout.
    The interval grows by half each try up to max_interval_s (no sleep(1) loops).
    """
    limit = scaled(timeout_s) if scale else timeout_s
    deadline = time.monotonic() + limit
    delay = interval_s
    last: Any = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except swallow as exc:  # noqa: PERF203 - polling loop
            last = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"{err_msg} within {limit:.2f}s (last observed: {last!r:.500})")
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max(max_interval_s, interval_s))
