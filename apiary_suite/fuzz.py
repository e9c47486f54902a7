"""Live frame fuzzing of AMDP/1 ROUTER endpoints: a seeded generator, a spec oracle and a paced driver.

* `FrameGenerator(seed, role, identities)` mixes six classes of messages (random bytes, mutated valid
  frames, truncated, oversized, out of order, valid) from one `random.Random(seed)`: a seed replays the
  same sequence.  `role` is what the fuzz peers pretend to be: "hive" (towards the orchestrator ROUTER)
  or "worker" (towards a hive ROUTER).
* `decode_spec(frames)` is what docs/protocol.md says a decoder does with a message, written from the
  spec (not from services.protocol.decode): the rejection reason, or the command and body.
* `FrameFuzzer` drives one endpoint from a few DEALERs, paced by sync markers (a message rejected with an
  echo of a counter: when its answer is back, everything sent before it was handled), keeps registered
  peers alive with heartbeats and tallies every answer.  Its `model` (bench/fuzz.py has the orchestrator's
  and the hive's) says what the endpoint counts and answers for each message, given the registrations.
"""
from __future__ import annotations

import collections
import random
import re
import time
from typing import Callable, NamedTuple

import msgpack
import zmq

from services import protocol as p
from services.protocol_malformed import SWAPS

from harness.errors import HarnessError

CLASSES = ("random", "mutated", "truncated", "oversized", "out_of_order", "valid")
WEIGHTS = (14, 38, 12, 2, 14, 20)
# Required body fields by command byte, from the command table of docs/protocol.md: s = string, i = integer.
SPEC_FIELDS = {1: "role:s id:s", 2: "job_id:s trace_id:s worker_id:s model:s prompt:s max_tokens:i seed:i attempt:i",
               3: "job_id:s attempt:i seq:i text:s", 4: "job_id:s attempt:i tokens:i", 5: "", 6: "reason:s",
               7: "code:s message:s", 8: "job_id:s attempt:i", 9: "worker_id:s free_slots:i state:s",
               10: "worker_id:s event:s", 11: "model:s", 12: "model:s state:s", 13: ""}
MAX_BODY = 1 << 20
UP = {"hive": (p.READY, p.HEARTBEAT, p.PARTIAL, p.FINAL, p.ERROR, p.CAPACITY, p.WORKER, p.PROGRESS, p.DISCONNECT),
      "worker": (p.READY, p.HEARTBEAT, p.PARTIAL, p.FINAL, p.ERROR, p.CAPACITY, p.DISCONNECT)}
DOWN = (p.REQUEST, p.CANCEL, p.PROVISION, p.SHUTDOWN)
ODD_STATES = ("lost", "left", "bogus", "", "READY", "loading")
EDGE_INTS = (0, -1, 1, 2, 2 ** 31, -2 ** 31, 2 ** 53 + 1, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1)
ODD_STRINGS = ("", " ", "\u00e9\u4e2d\U0001f41d", "x" * 1000, "\x00", "null", "fuzz-\u202e")
MARKER = re.compile(r"b'S(\d{7})'")


class FuzzError(HarnessError):
    """The fuzzed endpoint stopped answering, or the fuzzer was misused."""


class Case(NamedTuple):
    """One generated case: its class and operation, the peer (socket index) and the messages it sends."""

    cls: str
    op: str
    sock: int
    messages: list


def decode_spec(frames: list[bytes]) -> tuple[str | None, bytes | None, dict | None]:
    """Return (reason, None, None) for a message the spec rejects, else (None, command, body)."""
    if len(frames) != 3:
        return p.BAD_FRAME, None, None
    header, command, raw = (bytes(f) for f in frames)
    if header[:4] != b"AMDP":
        return p.BAD_PROTOCOL, None, None
    if header[4:] != b"01":
        return p.UNSUPPORTED_VERSION, None, None
    if len(command) != 1 or command[0] not in SPEC_FIELDS:
        return p.UNKNOWN_COMMAND, None, None
    if len(raw) > MAX_BODY:
        return p.TOO_LARGE, None, None
    try:
        body = p.loads(raw)
    except Exception:  # noqa: BLE001 - whatever the JSON parser raises, the spec says bad_body
        return p.BAD_BODY, None, None
    if not isinstance(body, dict):
        return p.BAD_BODY, None, None
    for spec in SPEC_FIELDS[command[0]].split():
        name, kind = spec.split(":")
        value = body.get(name)
        if not (isinstance(value, str) if kind == "s" else isinstance(value, int) and not isinstance(value, bool)):
            return p.BAD_BODY, None, None
    return None, command, body


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FrameGenerator:
    """Seeded generator of fuzz cases for peers playing `role` ("hive" or "worker") on `identities`."""

    def __init__(self, seed: int, role: str, identities: list[str]):
        if role not in UP:
            raise ValueError(f"role must be 'hive' or 'worker', got {role!r}")
        self.rng, self.role, self.ids = random.Random(seed), role, list(identities)
        tag = "o" if role == "hive" else "h"
        self.workers = [f"fuzz-{tag}w-{i}" for i in range(6)] if role == "hive" else self.ids + ["fuzz-hw-x"]
        self.models = [f"fuzz-model-{i}" for i in range(3)]
        self.jobs = [f"fuzz-job-{i}" for i in range(6)]
        self.sock = 0

    def case(self) -> Case:
        """Return the next case; a peer sends about 50 cases in a row (the driver syncs at each change of peer)."""
        cls = self.rng.choices(CLASSES, WEIGHTS)[0]
        if self.rng.random() < 0.02:
            self.sock = self.rng.randrange(len(self.ids))
        op, messages = getattr(self, "_" + cls)(self.sock)
        return Case(cls, op, self.sock, messages)

    # ---- values and valid bodies ------------------------------------------------------------------
    def _pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def _value(self, depth: int = 0):
        """Return a random JSON value, nested at most 3 deep."""
        rng = self.rng
        makers = (lambda: None, lambda: rng.random() < 0.5, lambda: self._pick(EDGE_INTS),
                  lambda: self._pick((0.5, -1.0, 1e300, 3.0)), lambda: self._pick(ODD_STRINGS + tuple(self.jobs)),
                  lambda: [self._value(depth + 1) for _ in range(rng.randrange(4))],
                  lambda: {self._pick(("id", "state", "x", "slots")): self._value(depth + 1)
                           for _ in range(rng.randrange(4))})
        return makers[rng.randrange(7 if depth < 3 else 5)]()

    def _state(self) -> str:
        return self._pick(p.WORKER_STATES) if self.rng.random() < 0.9 else self._pick(ODD_STATES)

    def _entry(self) -> dict:
        return {"id": self._pick(self.workers), "model": self._pick(self.models), "models": self.models[:2],
                "slots": self._pick((1, 2, 4)), "free_slots": self._pick((0, 1, 2)), "state": self._state(),
                "session": self._pick(("ws0", "ws1", None))}

    def _body(self, command: bytes, sock: int) -> dict:
        rng, job = self.rng, self._pick(self.jobs)
        own = self.ids[sock] if rng.random() < 0.9 else self._pick(self.ids + ["fuzz-other"])
        session = self._pick(("s0", "s1", None))
        if command == p.READY:
            if self.role == "hive":
                return {"role": "hive", "id": own, "session": session, "models": self.models[:1],
                        "workers": [self._entry() for _ in range(rng.randrange(3))]}
            return dict(self._entry(), role="worker", id=own, session=session)
        if command == p.HEARTBEAT:
            if self.role == "hive":
                return {"workers": {self._pick(self.workers): {"age_s": 0.1, "free_slots": 1, "state": self._state()}}}
            return {"free_slots": self._pick((0, 1, 2)), "state": self._state()}
        bodies = {
            p.PARTIAL: {"job_id": job, "attempt": rng.randrange(3), "seq": rng.randrange(3), "text": " bee"},
            p.FINAL: {"job_id": job, "attempt": rng.randrange(3), "tokens": rng.randrange(5)},
            p.ERROR: {"code": self._pick((p.WORKER_ERROR, p.CANCELLED, p.REJECTED, p.BAD_BODY)), "message": "fuzz",
                      **({"job_id": job, "attempt": 1} if rng.random() < 0.6 else {})},
            p.CAPACITY: {"worker_id": self._pick(self.workers), "free_slots": rng.randrange(3), "state": self._state(),
                         "models": self.models[:2]},
            p.WORKER: dict(self._entry(), worker_id=self._pick(self.workers),
                           event=self._pick(p.WORKER_EVENTS + ("exploded",))),
            p.PROGRESS: {"model": self._pick(self.models), "state": self._pick(("downloading", "ready", "failed")),
                         "bytes": 10, "total": 10},
            p.DISCONNECT: {"reason": "fuzz"},
            p.REQUEST: {"job_id": job, "trace_id": "t", "worker_id": self._pick(self.workers), "model": "m",
                        "prompt": "x", "max_tokens": 1, "seed": 0, "attempt": 1},
            p.CANCEL: {"job_id": job, "attempt": 1}, p.PROVISION: {"model": self._pick(self.models)},
            p.SHUTDOWN: {"grace_s": 0},
        }
        return bodies[command]

    def valid(self, sock: int, command: bytes | None = None) -> list[bytes]:
        """Return one well-formed message an upstream peer of this role may send."""
        command = command or self._pick(UP[self.role])
        return p.encode(command, self._body(command, sock))

    # ---- classes ----------------------------------------------------------------------------------
    def _random(self, sock: int):
        rng = self.rng
        n = rng.choice((1, 2, 3, 3, 3, 4, 5))
        frames = [rng.randbytes(rng.randrange(48)) for _ in range(n)]
        if n == 3 and rng.random() < 0.5:  # keep the header: random bytes reach the command and body checks
            frames[0] = p.HEADER
            if rng.random() < 0.5:
                frames[1] = self._pick(list(p.COMMAND_NAMES))
        return f"frames{n}", [frames]

    def _mutated(self, sock: int):
        rng, msg = self.rng, self.valid(sock)
        op = self._pick(("bitflip", "field_swap", "type_confusion", "edge_value", "drop_field", "extra_fields",
                         "wrong_version", "bad_protocol", "unknown_command", "bad_json", "msgpack_body",
                         "not_object", "wrong_frame_count", "deep_nesting", "raw_number", "empty_frames"))
        body = p.loads(msg[2])
        keys = list(body)
        if op == "bitflip":
            i = rng.choice((0, 1, 2, 2, 2))
            data = bytearray(msg[i] or b"\x00")
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            msg[i] = bytes(data)
        elif op == "field_swap" and len(keys) >= 2:
            a, b = rng.sample(keys, 2)
            body[a], body[b] = body[b], body[a]
        elif op == "type_confusion" and keys:
            body[self._pick(keys)] = self._value()
        elif op == "edge_value" and keys:
            key = self._pick(keys)
            old = body[key]
            body[key] = (self._pick(ODD_STATES) if key == "state" else self._pick(EDGE_INTS) if _int(old)
                         else self._pick(ODD_STRINGS) if isinstance(old, str) else self._value())
        elif op == "drop_field" and keys:
            del body[self._pick(keys)]
        elif op == "extra_fields":
            body.update({f"x{i}": self._value() for i in range(rng.randrange(1, 4))})
        elif op in SWAPS:
            swap = SWAPS[op]
            msg[swap.frame] = self._pick(swap.values + (rng.randbytes(2),))
        elif op == "bad_json":
            raw = msg[2]
            msg[2] = self._pick((raw + b"}", raw[:-1], raw.replace(b'"', b"'"), b"{\"a\":NaN}", b"\xef\xbb\xbf" + raw,
                                 raw[:1] + b"\xff\xfe" + raw[1:], b"{\"a\":\"\x01\"}", b"", b"{,}"))
        elif op == "msgpack_body":
            msg[2] = msgpack.packb(body)
        elif op == "wrong_frame_count":
            msg = msg[:rng.randrange(1, 3)] if rng.random() < 0.5 else msg + [b"{}"] * rng.randrange(1, 5)
        elif op == "deep_nesting":
            depth = rng.choice((200, 1100, 5000))
            msg[2] = b'{"x":' + b"[" * depth + b"]" * depth + b"}"
        elif op == "raw_number" and any(_int(v) for v in body.values()):
            key = self._pick([k for k, v in body.items() if _int(v)])
            msg[2] = p.dumps(body).replace(f'"{key}":{body[key]}'.encode(), f'"{key}":12345678901234567890e3'.encode())
        elif op == "empty_frames":
            msg = [b""] * rng.choice((1, 3, 3, 4))
        if op in ("field_swap", "type_confusion", "edge_value", "drop_field", "extra_fields"):
            msg[2] = p.dumps(body)
        return op, [msg]

    def _truncated(self, sock: int):
        rng, msg = self.rng, self.valid(sock)
        op = self._pick(("body_cut", "header_cut", "command_cut", "drop_frames"))
        if op == "body_cut":
            msg[2] = msg[2][:rng.randrange(len(msg[2]))]
        elif op == "header_cut":
            msg[0] = msg[0][:rng.randrange(len(msg[0]))]
        elif op == "command_cut":
            msg[1] = b""
        else:
            msg = msg[:rng.randrange(1, 3)]
        return op, [msg]

    def _oversized(self, sock: int):
        rng, msg = self.rng, self.valid(sock)
        op = self._pick(("body_over", "body_over", "body_at_limit", "header_over", "command_over", "many_frames"))
        if op in ("body_over", "body_at_limit"):
            size = MAX_BODY + rng.randrange(1, 65536) if op == "body_over" else MAX_BODY
            head = msg[2][:-1] + (b',"pad":"' if len(msg[2]) > 2 else b'"pad":"')
            msg[2] = head + b"x" * (size - len(head) - 2) + b'"}'
        elif op == "header_over":
            msg[0] = p.HEADER + b"\x00" * rng.randrange(1, 65536)
        elif op == "command_over":
            msg[1] = msg[1] * rng.randrange(2, 4096)
        else:
            msg = msg + [b"x"] * rng.randrange(64, 512)
        return op, [msg]

    def _out_of_order(self, sock: int):
        rng = self.rng
        op = self._pick(("before_ready", "final_unknown_job", "ready_twice", "disconnect_then", "wrong_direction",
                         "partial_after_final", "heartbeat_flood"))
        bye = p.encode(p.DISCONNECT, {"reason": "fuzz"})
        if op == "before_ready":
            return op, [bye] + [self.valid(sock, self._pick(UP[self.role][1:-1])) for _ in range(rng.randrange(1, 4))]
        if op == "final_unknown_job":
            job = f"fuzz-unknown-{rng.randrange(10 ** 6)}"
            return op, [p.encode(p.FINAL, {"job_id": job, "attempt": 1, "tokens": 1})]
        if op == "ready_twice":
            ready = self.valid(sock, p.READY)
            return op, [ready, ready if rng.random() < 0.5 else self.valid(sock, p.READY)]
        if op == "disconnect_then":
            return op, [self.valid(sock, p.READY), bye] + [self.valid(sock) for _ in range(rng.randrange(1, 4))]
        if op == "wrong_direction":
            return op, [self.valid(sock, self._pick(DOWN + ((p.WORKER, p.PROGRESS) if self.role == "worker" else ())))]
        if op == "partial_after_final":
            job = self._pick(self.jobs)
            return op, [p.encode(p.FINAL, {"job_id": job, "attempt": 1, "tokens": 1}),
                        p.encode(p.PARTIAL, {"job_id": job, "attempt": 1, "seq": 0, "text": " a"})]
        return op, [self.valid(sock, p.HEARTBEAT) for _ in range(rng.randrange(2, 6))]

    def _valid(self, sock: int):
        msg = self.valid(sock)
        return p.COMMAND_NAMES[msg[1]], [msg]


class FrameFuzzer:
    """Sends generated cases to one ROUTER endpoint and tallies what the model expects and what came back.

    `model` has `expect(identity, frames) -> (reasons, replies)` and `registered(identity) -> bool`.  A
    ROUTER fair-queues its peers, so two peers' messages are handled in no fixed order: one peer sends at a
    time, and before another starts (or a registered one is heartbeaten) its markers must be answered.
    That keeps the model exact when one peer's frames change another's registration (a shared hive id).
    """

    def __init__(self, endpoint: str, generator: FrameGenerator, model, keepalive: dict | None = None,
                 window: int = 128, deadline_s: float = 30.0, curve: "p.CurveKeys | None" = None, server: str = ""):
        """curve/server: an authorised key, so frames reach the decoder and state machine past CURVE."""
        self.endpoint, self.gen, self.model = endpoint, generator, model
        self.window, self.deadline_s = window, deadline_s
        self.keepalive = dict(keepalive or {})
        self.ctx, self.poller, self.socks = zmq.Context(), zmq.Poller(), []
        for ident in generator.ids:
            sock = self.ctx.socket(zmq.DEALER)
            for option, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0), (zmq.ROUTING_ID, ident.encode())):
                sock.setsockopt(option, value)
            if curve is not None:
                p.secure_client(sock, curve, server)
            sock.connect(endpoint)
            self.poller.register(sock, zmq.POLLIN)
            self.socks.append(sock)
        n = len(self.socks)
        self.pending = [collections.deque() for _ in range(n)]  # marker numbers awaiting their answer
        self.since_marker, self.last_beat, self.active = [0] * n, [0.0] * n, 0
        self.markers = self.generated = self.accepted = self.sent_bytes = 0
        # cases and messages by class, cases by class/op, reasons the endpoint must count, answers due and got
        self.cases, self.messages, self.ops = collections.Counter(), collections.Counter(), collections.Counter()
        self.expected, self.expected_replies, self.replies = (collections.Counter(), collections.Counter(),
                                                              collections.Counter())
        self.outcomes = collections.Counter()  # "class:reason" (or "class:accepted") of each generated message

    def run(self, n_messages: int, on_sync: Callable[["FrameFuzzer"], None] | None = None,
            sync_every_s: float = 1.0) -> dict:
        """Send generated cases until n_messages went out, DISCONNECT registered peers, wait for every marker."""
        t0 = next_sync = time.monotonic()
        while self.generated < n_messages:
            case = self.gen.case()
            if case.sock != self.active:
                self._switch(case.sock)
            self.cases[case.cls] += 1
            self.ops[f"{case.cls}/{case.op}"] += 1
            for frames in case.messages:
                self.messages[case.cls] += 1
                self.generated += 1
                reasons = self._send(case.sock, frames)
                self.accepted += not reasons
                self.outcomes.update(f"{case.cls}:{r}" for r in reasons or ["accepted"])
            if self.since_marker[case.sock] >= self.window:
                self._marker(case.sock)
            if self.cases.total() % 32 == 0:
                self._drain(0)
                now = time.monotonic()
                self._beat(self.active, now)
                if on_sync is not None and now >= next_sync:
                    next_sync = now + sync_every_s
                    on_sync(self)
        for s, ident in enumerate(self.gen.ids):
            self._switch(s)
            if self.model.registered(ident.encode()):
                self._send(s, p.encode(p.DISCONNECT, {"reason": "fuzz done"}))
            self._marker(s, wait_for=0)
        return self.summary(time.monotonic() - t0)

    def summary(self, elapsed: float) -> dict:
        """Counts so far as a JSON-ready dict (expected reasons include the markers': unsupported_version)."""
        by_class: dict[str, dict[str, int]] = {}
        for key, n in sorted(self.outcomes.items()):
            cls, outcome = key.split(":", 1)
            by_class.setdefault(cls, {})[outcome] = n
        return {"endpoint": self.endpoint, "cases": self.cases.total(), "messages": self.generated,
                "seconds": round(elapsed, 3), "messages_per_s": round(self.generated / elapsed, 1) if elapsed else None,
                "by_class": dict(self.messages), "cases_by_class": dict(self.cases),
                "ops": dict(sorted(self.ops.items())),
                "markers": self.markers, "keepalives": self.messages["keepalive"], "accepted": self.accepted,
                "expected_reasons": dict(self.expected), "expected_replies": dict(self.expected_replies),
                "replies": dict(self.replies), "bytes_sent": self.sent_bytes, "by_class_outcome": by_class}

    def close(self) -> None:
        """Close every socket."""
        for sock in self.socks:
            sock.close(0)
        self.ctx.term()

    # ---- internals ----------------------------------------------------------------------------------
    def _send(self, s: int, frames: list[bytes], marker: bool = False) -> list[str]:
        """Send one message from peer s, adding what the model expects of it; return the expected reasons."""
        reasons, replies = self.model.expect(self.gen.ids[s].encode(), frames)
        self.expected.update(reasons)
        if not marker:  # a marker's answer is consumed by _tally, not counted among the answers
            self.expected_replies.update(replies)
        self.sent_bytes += sum(len(f) for f in frames)
        self.since_marker[s] += 1
        self.socks[s].send_multipart(frames, copy=len(frames[-1]) < 65536)
        return reasons

    def _marker(self, s: int, wait_for: int = 1) -> None:
        """Send a sync marker from peer s; wait until at most `wait_for` of its markers are unanswered."""
        self.markers += 1
        self._send(s, [b"AMDP" + b"S%07d" % self.markers, p.READY, b"{}"], marker=True)
        self.pending[s].append(self.markers)
        self.since_marker[s] = 0
        deadline = time.monotonic() + self.deadline_s
        while len(self.pending[s]) > wait_for:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FuzzError(f"{self.endpoint} did not answer sync marker {self.pending[s][0]} of peer "
                                f"{self.gen.ids[s]} within {self.deadline_s:.0f} s: it stopped handling frames")
            self._drain(min(left, 0.2))

    def _switch(self, new: int) -> None:
        """Let peer `new` send next: wait until the active peer's frames were handled, heartbeat the others."""
        self._marker(self.active, wait_for=0)
        now = time.monotonic()
        for s in range(len(self.socks)):
            if s != self.active and self._beat(s, now):
                self._marker(s, wait_for=0)
        self.active = new

    def _beat(self, s: int, now: float) -> bool:
        """Heartbeat peer s when the model holds it registered and it was quiet 0.1 s (so it is never lost)."""
        if now - self.last_beat[s] < 0.1 or not self.model.registered(self.gen.ids[s].encode()):
            return False
        self.last_beat[s] = now
        self.messages["keepalive"] += 1
        self._send(s, p.encode(p.HEARTBEAT, dict(self.keepalive)))
        return True

    def _drain(self, timeout_s: float) -> None:
        """Receive every answer waiting (waiting up to timeout_s for the first)."""
        for sock, _ in self.poller.poll(int(timeout_s * 1000)):
            while sock.poll(0):
                self._tally(self.socks.index(sock), sock.recv_multipart())

    def _tally(self, s: int, frames: list[bytes]) -> None:
        """Count one answer by kind (error:<code>, disconnect, ready, ...); a marker's answer releases it."""
        try:
            msg = p.decode(frames)
        except p.ProtocolError as exc:
            self.replies[f"undecodable:{exc.code}"] += 1
            return
        found = MARKER.search(msg.body["message"]) if msg.command == p.ERROR else None
        if found and msg.body["code"] == p.UNSUPPORTED_VERSION:
            number = int(found.group(1))
            if not self.pending[s] or self.pending[s][0] != number:
                raise FuzzError(f"marker {number} answered out of order on {self.gen.ids[s]}: "
                                f"waiting for {list(self.pending[s])}")
            self.pending[s].popleft()
        else:
            self.replies["error:" + msg.body["code"] if msg.command == p.ERROR else msg.name.lower()] += 1
