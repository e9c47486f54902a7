"""When to retry and how long to wait: Retry-After on 429, exponential backoff with equal jitter on 503."""
from __future__ import annotations

import dataclasses
import email.utils
import random
import time


@dataclasses.dataclass(frozen=True)
class Policy:
    """Retry limits; every wait is bounded by `max_wait_s` and every request by `max_retries` retries."""

    max_retries: int = 5
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 5.0
    max_wait_s: float = 30.0
    timeout_s: float = 30.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date); None when absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_s(retry: int, policy: Policy, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: d = min(cap, base * 2**retry), wait d/2 + uniform(0, d/2)."""
    d = min(policy.backoff_cap_s, policy.backoff_base_s * (2 ** retry))
    return d / 2 + rng.uniform(0, d / 2)


def wait_for(status: int | None, retry_after: str | None, retry: int, policy: Policy,
             rng: random.Random) -> float | None:
    """Seconds to wait before retry number `retry` (0-based) after `status` (None: connection failed), or None
    when this answer is final (not retryable, or the retries are used up)."""
    if retry >= policy.max_retries:
        return None
    if status == 429:
        told = parse_retry_after(retry_after)
        wait = told if told is not None else backoff_s(retry, policy, rng)
    elif status == 503 or status is None:
        wait = backoff_s(retry, policy, rng)
        told = parse_retry_after(retry_after) if status == 503 else None
        wait = max(wait, told or 0.0)       # a server's Retry-After is a floor, never shortened by the jitter
    else:
        return None
    return min(wait, policy.max_wait_s)
