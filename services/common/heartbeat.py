"""Heartbeat and liveness bookkeeping (Paranoid Pirate style), loop-stall detection and a bounded reconnect backoff.

A peer's silence only counts while our own process was running: when a sweep finds that its own
tick came late (the event loop was blocked, or the process starved of CPU), the frames the peers
sent meanwhile may still be waiting unread, so the stalled time is credited to every peer
(`credit`) instead of being held against them.
"""
from __future__ import annotations

import random
import time
from typing import Callable, Hashable

HEARTBEAT_INTERVAL_S = 0.2   # default; services read APIARY_HEARTBEAT_INTERVAL_S
HEARTBEAT_LIVENESS = 4       # missed intervals before a peer is lost; expiry = interval * liveness = 0.8 s


class Liveness:
    """Track when one peer was last heard from; any inbound frame counts as life."""

    def __init__(self, interval_s: float = HEARTBEAT_INTERVAL_S, liveness: int = HEARTBEAT_LIVENESS,
                 clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.expiry_s = interval_s * liveness
        self._clock = clock
        self.last_seen = clock()

    def touch(self) -> None:
        """Record that the peer just spoke."""
        self.last_seen = self._clock()

    def age(self) -> float:
        """Return seconds since the peer last spoke."""
        return self._clock() - self.last_seen

    def expired(self) -> bool:
        """Return True when the peer has been silent longer than the expiry."""
        return self.age() > self.expiry_s

    def credit(self, seconds: float) -> None:
        """Do not count `seconds` of silence (our own loop was stalled meanwhile)."""
        self.last_seen = min(self._clock(), self.last_seen + seconds)


class PeerLiveness:
    """Liveness of many peers keyed by id, with a sweep that returns the expired ones."""

    def __init__(self, interval_s: float = HEARTBEAT_INTERVAL_S, liveness: int = HEARTBEAT_LIVENESS,
                 clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.expiry_s = interval_s * liveness
        self._clock = clock
        self._last: dict[Hashable, float] = {}

    def touch(self, peer: Hashable) -> None:
        """Record that `peer` just spoke (adds it when new)."""
        self._last[peer] = self._clock()

    def forget(self, peer: Hashable) -> None:
        """Stop tracking `peer`."""
        self._last.pop(peer, None)

    def age(self, peer: Hashable) -> float | None:
        """Return seconds since `peer` spoke, or None if unknown."""
        last = self._last.get(peer)
        return None if last is None else self._clock() - last

    def __contains__(self, peer: Hashable) -> bool:
        return peer in self._last

    def credit(self, seconds: float) -> None:
        """Do not count `seconds` of silence against any peer (our own loop was stalled meanwhile)."""
        now = self._clock()
        last = self._last
        for peer, seen in last.items():
            last[peer] = min(now, seen + seconds)

    def purge_expired(self) -> list[Hashable]:
        """Remove and return every peer silent for longer than the expiry."""
        deadline = self._clock() - self.expiry_s
        dead = [peer for peer, last in self._last.items() if last < deadline]
        for peer in dead:
            del self._last[peer]
        return dead


class StallClock:
    """Tell how late a periodic task runs: the time our own loop (or process) was stalled.

    The task calls tick() each time it wakes; the lateness beyond its period is returned when it
    exceeds the tolerance (default: one period), else 0.0.
    """

    def __init__(self, period_s: float, tolerance_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.period_s = period_s
        self.tolerance_s = period_s if tolerance_s is None else tolerance_s
        self._clock = clock
        self._last = clock()
        self.stalls = 0
        self.stalled_s = 0.0

    def tick(self) -> float:
        """Return the seconds this tick came later than expected (0.0 when on time)."""
        now = self._clock()
        late = now - self._last - self.period_s
        self._last = now
        if late <= self.tolerance_s:
            return 0.0
        self.stalls += 1
        self.stalled_s += late
        return late


class Backoff:
    """Bounded exponential backoff with jitter for reconnect attempts."""

    def __init__(self, initial_s: float = 0.05, maximum_s: float = 2.0, factor: float = 2.0,
                 jitter: float = 0.2, rng: random.Random | None = None):
        self.initial_s, self.maximum_s, self.factor, self.jitter = initial_s, maximum_s, factor, jitter
        self._rng = rng or random.Random()
        self._next = initial_s
        self.attempts = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt and grow the following one (never above max)."""
        delay = self._next
        self._next = min(self.maximum_s, self._next * self.factor)
        self.attempts += 1
        spread = delay * self.jitter
        return max(0.0, min(self.maximum_s, delay + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        """Start again from the initial delay (after a successful connection)."""
        self._next = self.initial_s
        self.attempts = 0
