"""AMDP/1, the Apiary wire protocol: every frame, command and event between orchestrator, hives and workers.

Modelled on ZeroMQ RFC 18/MDP (Majordomo 0.2: PARTIAL/FINAL replies suit token streaming) and
extended for registration with model and slots, job and trace ids, capacity, cancellation, error
codes, provisioning and heartbeats in both directions.  See docs/protocol.md for the frame tables.
Nothing else in the code base builds or parses frames by hand; the deliberately malformed ones are
catalogued beside it, in services/protocol_malformed.py, each with the ERROR code it earns.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, NamedTuple

try:  # orjson: 2.5x msgpack, 10x stdlib json for our bodies (bench.transport measures it)
    import orjson as _json

    def _dumps(obj: Any) -> bytes:
        return _json.dumps(obj)

    _loads = _json.loads
    _DecodeError: tuple[type[BaseException], ...] = (_json.JSONDecodeError, ValueError, TypeError)
except ImportError:  # pragma: no cover - exercised only where orjson is missing
    import json as _json  # type: ignore[no-redef]

    def _dumps(obj: Any) -> bytes:
        return _json.dumps(obj, separators=(",", ":")).encode()

    _loads = _json.loads  # type: ignore[assignment]
    _DecodeError = (ValueError, TypeError, UnicodeDecodeError, RecursionError)  # a deeply nested body

PROTOCOL = b"AMDP"
VERSION = b"01"
HEADER = PROTOCOL + VERSION
MAX_BODY_BYTES = 1 << 20

# Commands: one byte on the wire.
READY = b"\x01"       # peer -> upstream: register (worker -> hive, hive -> orchestrator)
REQUEST = b"\x02"     # downstream: run a job
PARTIAL = b"\x03"     # upstream: one or more tokens of a job
FINAL = b"\x04"       # upstream: a job ended successfully
HEARTBEAT = b"\x05"   # both ways
DISCONNECT = b"\x06"  # both ways: forget me / you are unknown, re-register
ERROR = b"\x07"       # both ways: a job failed, or a frame was rejected
CANCEL = b"\x08"      # downstream: stop a job
CAPACITY = b"\x09"    # upstream: free slots / state of a worker changed
WORKER = b"\x0a"      # hive -> orchestrator: a worker joined, was lost, left
PROVISION = b"\x0b"   # orchestrator -> hive: fetch a model
PROGRESS = b"\x0c"    # hive -> orchestrator: provisioning progress
SHUTDOWN = b"\x0d"    # downstream: cascading graceful shutdown

COMMAND_NAMES = {
    READY: "READY", REQUEST: "REQUEST", PARTIAL: "PARTIAL", FINAL: "FINAL",
    HEARTBEAT: "HEARTBEAT", DISCONNECT: "DISCONNECT", ERROR: "ERROR", CANCEL: "CANCEL",
    CAPACITY: "CAPACITY", WORKER: "WORKER", PROVISION: "PROVISION", PROGRESS: "PROGRESS",
    SHUTDOWN: "SHUTDOWN",
}

# Required body fields per command, with their JSON types.  Extra fields are allowed (forward
# compatible within a version); a missing or mistyped required field is a bad body.
_STR, _INT, _NUM, _LIST, _DICT, _BOOL = str, int, (int, float), list, dict, bool
REQUIRED: dict[bytes, dict[str, Any]] = {
    READY: {"role": _STR, "id": _STR},
    REQUEST: {"job_id": _STR, "trace_id": _STR, "worker_id": _STR, "model": _STR,
              "prompt": _STR, "max_tokens": _INT, "seed": _INT, "attempt": _INT},
    PARTIAL: {"job_id": _STR, "attempt": _INT, "seq": _INT, "text": _STR},
    FINAL: {"job_id": _STR, "attempt": _INT, "tokens": _INT},
    HEARTBEAT: {},
    DISCONNECT: {"reason": _STR},
    ERROR: {"code": _STR, "message": _STR},
    CANCEL: {"job_id": _STR, "attempt": _INT},
    CAPACITY: {"worker_id": _STR, "free_slots": _INT, "state": _STR},
    WORKER: {"worker_id": _STR, "event": _STR},
    PROVISION: {"model": _STR},
    PROGRESS: {"model": _STR, "state": _STR},
    SHUTDOWN: {},
}

# Error codes carried in ERROR bodies and in ProtocolError.code.
BAD_FRAME = "bad_frame"                  # wrong frame count / empty frames
BAD_PROTOCOL = "bad_protocol"            # header is not AMDP
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_COMMAND = "unknown_command"
BAD_BODY = "bad_body"                    # not a JSON object, or a required field missing/mistyped
TOO_LARGE = "too_large"
NOT_REGISTERED = "not_registered"        # a peer spoke before READY
WORKER_LOST = "worker_lost"
WORKER_ERROR = "worker_error"
REJECTED = "rejected"                    # worker refused the job
CANCELLED = "cancelled"
TIMEOUT = "timeout"
NO_CAPACITY = "no_capacity"
UNKNOWN_MODEL = "unknown_model"
SHUTTING_DOWN = "shutting_down"

WORKER_STATES = ("ready", "busy", "unhealthy", "draining")
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})  # job states a job never leaves
MAX_SLOTS = 2 ** 31 - 1  # a worker's `slots` are 1..MAX_SLOTS (2**64-1 killed the registry's SQLite writer thread)
WORKER_EVENTS = ("joined", "lost", "left", "unhealthy", "healthy")


class ProtocolError(Exception):
    """A frame that cannot be accepted; `code` is one of the error codes above."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class Message(NamedTuple):
    """A decoded frame set: command byte and body mapping."""

    command: bytes
    body: dict

    @property
    def name(self) -> str:
        """Return the command's name, e.g. 'REQUEST'."""
        return COMMAND_NAMES.get(self.command, "?")


def encode(command: bytes, body: dict | None = None) -> list[bytes]:
    """Return the frames [header, command, body] for a command (ROUTER adds/strips identity)."""
    if command not in COMMAND_NAMES:
        raise ValueError(f"unknown command {command!r}")
    return [HEADER, command, _dumps(body or {})]


def decode(frames: list[bytes], max_body: int = MAX_BODY_BYTES) -> Message:
    """Decode [header, command, body] frames, raising ProtocolError with the reason on any defect."""
    if len(frames) != 3:
        raise ProtocolError(BAD_FRAME, f"expected 3 frames (header, command, body), got {len(frames)}")
    header, command, raw = frames
    header = bytes(header)
    if not header.startswith(PROTOCOL):
        raise ProtocolError(BAD_PROTOCOL, f"header {header[:16]!r} is not {PROTOCOL!r}")
    if header[len(PROTOCOL):] != VERSION:
        raise ProtocolError(UNSUPPORTED_VERSION,
                            f"version {header[len(PROTOCOL):][:8]!r} unsupported, speak {VERSION!r}")
    command = bytes(command)
    required = REQUIRED.get(command)
    if required is None:
        raise ProtocolError(UNKNOWN_COMMAND, f"unknown command {command[:8]!r}")
    if len(raw) > max_body:
        raise ProtocolError(TOO_LARGE, f"body of {len(raw)} bytes exceeds limit {max_body}")
    try:
        body = _loads(raw)
    except _DecodeError as exc:
        raise ProtocolError(BAD_BODY, f"{COMMAND_NAMES[command]} body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(BAD_BODY, f"{COMMAND_NAMES[command]} body must be a JSON object")
    for field, kind in required.items():
        value = body.get(field)
        if value is None or not isinstance(value, kind) or (kind is _INT and isinstance(value, bool)):
            raise ProtocolError(BAD_BODY, f"{COMMAND_NAMES[command]} field '{field}' missing or not "
                                          f"{getattr(kind, '__name__', 'number')}")
    return Message(command, body)


def split_envelope(frames: list[bytes]) -> tuple[bytes, list[bytes]]:
    """Split a ROUTER-received multipart into (peer identity, protocol frames)."""
    if not frames:
        raise ProtocolError(BAD_FRAME, "empty message")
    return bytes(frames[0]), frames[1:]


def error_body(code: str, message: str, job_id: str | None = None, attempt: int | None = None) -> dict:
    """Build an ERROR body (job fields only when the error concerns a job)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if job_id is not None:
        body["job_id"] = job_id
    if attempt is not None:
        body["attempt"] = attempt
    return body


# ---- cluster events (orchestrator PUB socket) ---------------------------------------------------

EVENT_TOPICS = (
    "hive.registered", "hive.lost", "hive.left",
    "worker.registered", "worker.lost", "worker.unhealthy", "worker.healthy", "worker.left",
    "job.accepted", "job.dispatched", "job.first_token", "job.completed", "job.failed",
    "job.redispatched", "job.cancelled",
    "model.provisioning", "model.progress", "model.ready", "model.failed", "model.retry",
    "cluster.shutdown",
)


def encode_event(topic: str, seq: int, fields: dict) -> list[bytes]:
    """Return [topic, body] frames of one cluster event."""
    body = dict(fields)
    body.update(topic=topic, seq=seq, ts=time.time())
    return [topic.encode(), _dumps(body)]


def decode_event(frames: list[bytes]) -> dict:
    """Decode [topic, body] event frames into the body dict, raising ProtocolError on a defect."""
    if len(frames) != 2:
        raise ProtocolError(BAD_FRAME, f"event needs 2 frames (topic, body), got {len(frames)}")
    try:
        body = _loads(frames[1])
    except _DecodeError as exc:
        raise ProtocolError(BAD_BODY, f"event body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("topic") != bytes(frames[0]).decode("utf-8", "replace"):
        raise ProtocolError(BAD_BODY, "event body must be an object whose 'topic' matches frame 0")
    return body


def dumps(obj: Any) -> bytes:
    """Serialise a JSON value the way bodies are encoded (for HTTP payloads and logs)."""
    return _dumps(obj)


def loads(raw: bytes | str) -> Any:
    """Parse JSON the way bodies are decoded."""
    return _loads(raw)


# ---- the mock model's deterministic output ------------------------------------------------------

VOCABULARY = (
    "the", "hive", "buzzes", "while", "bees", "carry", "pollen", "across", "quiet", "meadows",
    "and", "honey", "drips", "slowly", "from", "golden", "combs", "under", "warm", "light",
    "workers", "dance", "to", "share", "routes", "toward", "distant", "flowers", "each", "morning",
    "queen", "rests",
)


def generate_token(prompt: str, seed: int, index: int) -> str:
    """Return token `index` of the mock model's output for (prompt, seed); leading space included."""
    digest = hashlib.blake2b(f"{seed}\x00{index}\x00{prompt}".encode(), digest_size=2).digest()
    return " " + VOCABULARY[int.from_bytes(digest, "big") % len(VOCABULARY)]


def generate_text(prompt: str, seed: int, max_tokens: int) -> str:
    """Return the full text the mock model produces for (prompt, seed, max_tokens)."""
    return "".join(generate_token(prompt, seed, i) for i in range(max_tokens))


# CURVE (RFC 26) keys and ZAP (RFC 27) domains are part of the wire contract; their one home is services/curve.py.
from services.curve import (CurveError, CurveKeys, curve_enabled, load_keys, make_keyset,  # noqa: E402,F401
                            secure_client)
