"""Client load of a chaos soak: paced logical requests from several tenants, streamed and not, each with a
client-made nonce (in the prompt and in the Idempotency-Key header) and retried with the same key until it
reaches a definite outcome or runs out of tries. Bounded in time and in count; stops by itself."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from apiary_suite.client import ApiClient

# Retried with the same key: no definite answer, or not admitted (throttled, no ready worker). A definite
# failure (a 4xx, a worker's 502, a stream ended by an error event) is the request's outcome: the same key
# would only replay it.
RETRY_STATUSES = {None, 429, 503, 504}


@dataclass
class LoadPlan:
    """What the load does: pace, mix, and its bounds."""

    rate_rps: float = 20.0             # logical requests started per second (all clients together)
    clients: int = 8                   # threads
    tenants: tuple[str, ...] = ("tenant-a", "tenant-b")
    stream_share: float = 0.5
    min_tokens: int = 2
    max_tokens: int = 6
    max_tries: int = 8                 # tries per logical request, same Idempotency-Key: the backoff (0.2 s
                                       # doubling to 2 s) rides out an orchestrator restart (~9 s in all)
    try_timeout_s: float = 10.0
    max_requests: int = 200_000        # hard bound on logical requests


@dataclass
class LoadStats:
    """Counts the load keeps while it runs (the history holds every try)."""

    started: int = 0
    ok: int = 0
    gave_up: int = 0
    tries: int = 0
    retries: int = 0
    by_status: dict = field(default_factory=dict)


def nonce_for(tag: str, seq: int, rng: random.Random) -> str:
    """A client-made nonce: the run tag, the sequence number and 6 random hex digits."""
    return f"{tag}{seq:06d}{rng.getrandbits(24):06x}"


def should_retry(c) -> bool:
    """A try worth repeating with the same key: no answer, a cut stream, throttled or a server-side error."""
    if c.ok:
        return False
    if c.exception is not None or c.status in RETRY_STATUSES:
        return True
    return c.status == 200 and not c.done and c.error is None


class SoakLoad:
    """Threads that start logical requests at the plan's pace until stopped, the deadline, or the count bound."""

    def __init__(self, client: ApiClient, plan: LoadPlan, seed: int, tag: str = "n"):
        self.client, self.plan, self.seed, self.tag = client, plan, seed, tag
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seq = 0
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    def start(self, max_s: float) -> "SoakLoad":
        """Start the client threads; they stop starting new requests after max_s seconds at the latest."""
        self._t0 = time.monotonic()
        self._deadline = self._t0 + max_s
        for i in range(self.plan.clients):
            t = threading.Thread(target=self._run, args=(i,), name=f"soak-load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout_s: float) -> LoadStats:
        """Stop starting requests, let the ones in flight finish their tries; raise if a thread hangs."""
        self._stop.set()
        return self.finish(timeout_s)

    def finish(self, timeout_s: float) -> LoadStats:
        """Wait for the threads to end by themselves (at the deadline, after their tries); raise if one hangs."""
        end = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            raise AssertionError(f"soak load threads still running after {timeout_s:.0f}s: {stuck}")
        return self.stats

    def _next(self) -> int | None:
        """The next sequence number when it is due (paced), None when the load must stop."""
        with self._lock:
            if self._seq >= self.plan.max_requests:
                return None
            seq = self._seq
            self._seq += 1
        due = self._t0 + seq / max(self.plan.rate_rps, 0.001)
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= self._deadline:
                return None
            if now >= due:
                return seq
            self._stop.wait(min(0.2, due - now))
        return None

    def _run(self, index: int) -> None:
        rng = random.Random(f"{self.seed}:load:{index}")
        while True:
            seq = self._next()
            if seq is None:
                return
            self.one(seq, rng)

    def one(self, seq: int, rng: random.Random) -> bool:
        """One logical request with its retries; True when it ended ok."""
        p = self.plan
        tenant = p.tenants[seq % len(p.tenants)]
        nonce = nonce_for(self.tag, seq, rng)
        stream = rng.random() < p.stream_share
        tokens = rng.randint(p.min_tokens, p.max_tokens)
        prompt = f"soak {tenant} nonce:{nonce}"
        with self._lock:
            self.stats.started += 1
        for attempt in range(p.max_tries):
            c = self.client.complete(prompt, tenant=tenant, max_tokens=tokens, seed=seq % 997, stream=stream,
                                     headers={"Idempotency-Key": nonce}, timeout_s=p.try_timeout_s,
                                     annotate={"nonce": nonce, "try": attempt, "seq": seq})
            with self._lock:
                self.stats.tries += 1
                self.stats.retries += attempt > 0
                key = str(c.status if c.exception is None else "exception")
                self.stats.by_status[key] = self.stats.by_status.get(key, 0) + 1
            if c.ok:
                with self._lock:
                    self.stats.ok += 1
                return True
            if not should_retry(c) or attempt == p.max_tries - 1:
                break
            retry_after = c.headers.get("Retry-After") if c.headers else None
            delay = min(2.0, 0.2 * 2 ** attempt)
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                delay = min(2.0, max(delay, float(retry_after)))
            time.sleep(delay)   # the client's backoff between tries (<= 2 s), not a wait for a condition
        with self._lock:
            self.stats.gave_up += 1
        return False
