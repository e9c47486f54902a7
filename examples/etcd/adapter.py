"""The etcd example's client adapter: a small client over etcd's JSON HTTP API and a register workload.

`EtcdClient(base_url)` speaks the v3 gRPC gateway on a member's client port (etcd 3.4: POST /v3/kv/put,
/v3/kv/range, /v3/kv/txn, /v3/maintenance/status, /v3/cluster/member/list; keys and values base64,
64-bit integers as strings). Every call has a timeout (per socket operation) and raises an `EtcdError`
naming the member URL and the request.  `RegisterWorkload` drives client threads doing random read, write
and compare-and-set on a few keys, bounded in count and time, and records each op into a
`harness.history.History` in the shape `harness.checkers.linearizable.check_register` reads (paced to
`rate_per_s` ops a second over all threads when given, so a long soak keeps a steady, checkable load):
  invoke f=read|write|cas, value (write: the value; cas: [expected, new]; read: None), key=<etcd key>;
  completion ok|fail|info: ok read -> the value read (None: no such key); cas that did not match -> fail;
  a timeout, a connection error or an etcd 5xx -> info (the outcome is unknown); an etcd 4xx -> fail.
Written values are unique per write ("p3-17": process 3's 17th op), so a stale read is visible.
Knows nothing of Apiary's services or suite; imports only the kit's history.
"""
from __future__ import annotations

import base64
import http.client
import json
import random
import threading
import time
import urllib.parse
from typing import Any, Sequence

from harness.history import History

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MIX = (("read", 0.5), ("write", 0.3), ("cas", 0.2))


class EtcdError(RuntimeError):
    """An etcd request without a usable answer; names the member URL, the request and why."""

    def __init__(self, url: str, path: str, reason: str, status: int | None = None):
        self.url, self.path, self.reason, self.status = url, path, reason, status
        where = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"etcd member {url}: {path}: {where}{reason}")

    @property
    def definite(self) -> bool:
        """True when etcd refused the request (4xx: it did not take effect); False when the outcome is unknown."""
        return self.status is not None and 400 <= self.status < 500


class EtcdUnavailable(EtcdError):
    """No answer at all from the member: connection refused or reset, or the timeout passed."""


def encode(text: str) -> str:
    """A key or value as the gateway wants it: UTF-8, base64."""
    return base64.b64encode(text.encode()).decode("ascii")


def decode(data: str) -> str:
    """A base64 key or value from the gateway, as text."""
    return base64.b64decode(data).decode()


class EtcdClient:
    """One etcd member's client API over HTTP/JSON; a keep-alive connection per calling thread."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"etcd member URL must be http://host:port, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 2379
        self.timeout_s = timeout_s
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"EtcdClient({self.base_url!r})"

    # ---- transport -------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        return conn

    def close(self) -> None:
        """Close the calling thread's connection (the next call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """Send one request and return the JSON answer; raise EtcdError (EtcdUnavailable: no answer)."""
        payload = None if body is None else json.dumps(body).encode()
        conn = self._connection()
        try:
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException) as exc:   # socket.timeout is an OSError
            self.close()
            reason = f"no answer within {self.timeout_s:g} s" if isinstance(exc, TimeoutError) else \
                f"{type(exc).__name__}: {exc}"
            raise EtcdUnavailable(self.base_url, path, reason) from None
        if reply.status != 200:
            raise EtcdError(self.base_url, path, self._error_text(data), status=reply.status)
        try:
            return json.loads(data)
        except ValueError:
            raise EtcdError(self.base_url, path, f"answer is not JSON: {data[:200]!r}", status=reply.status) from None

    @staticmethod
    def _error_text(data: bytes) -> str:
        try:
            body = json.loads(data)
            return str(body.get("error") or body.get("message") or body)
        except ValueError:
            return data[:200].decode(errors="replace") or "(empty body)"

    # ---- the key-value API -----------------------------------------------------------------------------
    def put(self, key: str, value: str) -> int:
        """Write key=value; return the cluster revision of the write."""
        reply = self.request("POST", "/v3/kv/put", {"key": encode(key), "value": encode(value)})
        return int(reply.get("header", {}).get("revision", 0))

    def get(self, key: str, serializable: bool = False) -> str | None:
        """The key's value, or None when it does not exist. Linearizable unless serializable=True
        (then the member answers from its own state, which may be stale)."""
        body: dict[str, Any] = {"key": encode(key)}
        if serializable:
            body["serializable"] = True
        kvs = self.request("POST", "/v3/kv/range", body).get("kvs") or []
        return decode(kvs[0].get("value", "")) if kvs else None

    def cas(self, key: str, expected: str | None, new: str) -> bool:
        """Set key to new iff its value is expected (None: iff the key does not exist); True if it did."""
        if expected is None:
            compare = {"key": encode(key), "result": "EQUAL", "target": "VERSION", "version": "0"}
        else:
            compare = {"key": encode(key), "result": "EQUAL", "target": "VALUE", "value": encode(expected)}
        reply = self.request("POST", "/v3/kv/txn", {
            "compare": [compare], "success": [{"request_put": {"key": encode(key), "value": encode(new)}}]})
        return bool(reply.get("succeeded", False))   # the gateway omits false

    def delete(self, key: str) -> int:
        """Delete the key; return how many keys were deleted."""
        return int(self.request("POST", "/v3/kv/deleterange", {"key": encode(key)}).get("deleted", 0))

    # ---- the cluster -----------------------------------------------------------------------------------
    def status(self) -> dict:
        """{"leader", "member_id", "raft_term", "raft_index", "is_leader", "version"} as this member sees them
        (leader 0: it knows of no leader)."""
        reply = self.request("POST", "/v3/maintenance/status", {})
        header = reply.get("header", {})
        leader, member = int(reply.get("leader", 0)), int(header.get("member_id", 0))
        return {"leader": leader, "member_id": member,
                "raft_term": int(reply.get("raftTerm", header.get("raft_term", 0))),
                "raft_index": int(reply.get("raftIndex", 0)), "is_leader": leader != 0 and leader == member,
                "version": reply.get("version")}

    def members(self) -> list[dict]:
        """The cluster's members as this member lists them: [{"id", "name", "peer_urls", "client_urls"}]."""
        reply = self.request("POST", "/v3/cluster/member/list", {})
        return [{"id": int(m.get("ID", 0)), "name": m.get("name", ""), "peer_urls": list(m.get("peerURLs") or []),
                 "client_urls": list(m.get("clientURLs") or [])} for m in reply.get("members") or []]

    def healthy(self) -> bool:
        """GET /health answers 200 {"health": "true"} (the member sees a leader and can serve a read)."""
        try:
            return self.request("GET", "/health").get("health") == "true"
        except EtcdError:
            return False


class WorkloadError(RuntimeError):
    """The workload could not run to its end (a thread did not stop, or crashed on a non-etcd error)."""


class RegisterWorkload:
    """N client threads doing random read/write/cas on a few keys against the given members, bounded in
    op count and time; every op goes into `history` as invoke + ok/fail/info."""

    def __init__(self, members: Sequence[str], history: History | None = None, *, keys: Sequence[str] = ("r0", "r1", "r2"),
                 threads: int = 5, duration_s: float = 5.0, max_ops: int = 5000, seed: int = 0,
                 serializable: bool = False, mix: Sequence[tuple[str, float]] = DEFAULT_MIX,
                 timeout_s: float = DEFAULT_TIMEOUT_S, first_process: int = 0, rate_per_s: float | None = None):
        if not members:
            raise ValueError("RegisterWorkload needs at least one member URL")
        if threads < 1 or duration_s <= 0 or max_ops < 1 or (rate_per_s is not None and rate_per_s <= 0):
            raise ValueError("threads, duration_s, max_ops and rate_per_s (when given) must be positive")
        self.members, self.keys = list(members), list(keys)
        self.history = history if history is not None else History()
        self.threads, self.duration_s, self.max_ops = threads, duration_s, max_ops
        self.seed, self.serializable, self.timeout_s = seed, serializable, timeout_s
        self.gap_s = threads / rate_per_s if rate_per_s else 0.0   # each thread's spacing of op starts
        self.first_process = first_process   # process ids start here: two workloads can share one history
        self.fs = [f for f, _ in mix]
        self.weights = [w for _, w in mix]
        unknown = set(self.fs) - {"read", "write", "cas"}
        if unknown:
            raise ValueError(f"mix names ops other than read/write/cas: {sorted(unknown)}")
        self._lock = threading.Lock()
        self._started = 0
        self._latest: dict[str, str | None] = {k: None for k in self.keys}   # last value seen, for cas
        self._errors: list[str] = []
        self.summary: dict[str, Any] = {}

    def run(self) -> dict:
        """Run the threads to their bound; return {"ops", "ok", "fail", "info", "by_f", "seconds"}."""
        started = time.monotonic()
        deadline = started + self.duration_s
        workers = [threading.Thread(target=self._drive, args=(i, deadline), name=f"etcd-client-{i}", daemon=True)
                   for i in range(self.threads)]
        for w in workers:
            w.start()
        join_by = deadline + 2 * self.timeout_s + 2.0   # the last op of each thread ends within its timeout
        for w in workers:
            w.join(max(0.0, join_by - time.monotonic()))
        stuck = [w.name for w in workers if w.is_alive()]
        if stuck:
            raise WorkloadError(f"client threads {stuck} did not stop within {join_by - started:.1f} s")
        if self._errors:
            raise WorkloadError(f"client threads crashed: {self._errors[:3]}")
        ops = [op for op in self.history.ops if op.get("f") in ("read", "write", "cas")]
        done = [op for op in ops if op["type"] != "invoke"]
        by_f: dict[str, dict[str, int]] = {}
        for op in done:
            by_f.setdefault(op["f"], {}).setdefault(op["type"], 0)
            by_f[op["f"]][op["type"]] += 1
        self.summary = {"ops": len(ops) - len(done), "ok": sum(op["type"] == "ok" for op in done),
                        "fail": sum(op["type"] == "fail" for op in done),
                        "info": sum(op["type"] == "info" for op in done), "by_f": by_f,
                        "seconds": round(time.monotonic() - started, 3)}
        return self.summary

    def _claim(self) -> bool:
        """Take one op from the shared budget (False when max_ops ops have been started)."""
        with self._lock:
            if self._started >= self.max_ops:
                return False
            self._started += 1
            return True

    def _drive(self, thread: int, deadline: float) -> None:
        """One client thread: one member, its own seeded random source; a new process id after each info."""
        rng = random.Random(f"{self.seed}:{thread}")
        client = EtcdClient(self.members[thread % len(self.members)], self.timeout_s)
        process, n = self.first_process + thread, 0
        due = time.monotonic() + self.gap_s * thread / self.threads   # paced threads start staggered
        try:
            while self._pace(due, deadline) and self._claim():
                due = max(due, time.monotonic()) + self.gap_s          # a late start: no catch-up burst
                n += 1
                outcome = self._one(client, rng, process, f"p{process}-{n}")
                if outcome == "info":   # its op may still take effect: that process is gone (Jepsen's rule)
                    process += self.threads
        except Exception as exc:  # a bug, not etcd: the run must not pass on it
            with self._lock:
                self._errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    def _pace(self, due: float, deadline: float) -> bool:
        """Sleep until the thread's next op is due (unpaced: it is due now); False once the deadline has come."""
        now = time.monotonic()
        if now < due:
            time.sleep(max(0.0, min(due, deadline) - now))   # the load's pacing, not a wait for a condition
        return time.monotonic() < deadline

    def _one(self, client: EtcdClient, rng: random.Random, process: int, fresh: str) -> str:
        """Invoke, perform and complete one random op; return its completion type."""
        key = rng.choice(self.keys)
        f = rng.choices(self.fs, self.weights)[0]
        with self._lock:
            latest = self._latest[key]
        value: Any = None if f == "read" else fresh if f == "write" else [latest, fresh]
        op = self.history.invoke(process, f, value, key=key, node=client.base_url)
        try:
            if f == "read":
                seen = client.get(key, serializable=self.serializable)
                self.history.complete(op, "ok", seen, key=key, node=client.base_url)
                self._note(key, seen)
                return "ok"
            if f == "write":
                client.put(key, fresh)
                self.history.complete(op, "ok", value, key=key, node=client.base_url)
                self._note(key, fresh)
                return "ok"
            swapped = client.cas(key, latest, fresh)
            self.history.complete(op, "ok" if swapped else "fail", value, key=key, node=client.base_url,
                                  **({} if swapped else {"error": "compare failed"}))
            if swapped:
                self._note(key, fresh)
            return "ok" if swapped else "fail"
        except EtcdError as exc:
            outcome = "fail" if exc.definite else "info"
            self.history.complete(op, outcome, value, key=key, node=client.base_url, error=str(exc))
            return outcome
        except BaseException as exc:
            self.history.complete(op, "info", value, key=key, node=client.base_url, error=repr(exc))
            raise

    def _note(self, key: str, value: str | None) -> None:
        with self._lock:
            self._latest[key] = value
