"""What the fuzzed endpoints must answer: small models of the orchestrator's and a hive's ROUTER state
machines that predict, per message, which protocol-error reason is counted and what the service answers
(used by bench/fuzz.py and tests/fuzz)."""
from __future__ import annotations

from apiary_suite.fuzz import decode_spec
from services import protocol as p

ORCH_STATES = frozenset(p.WORKER_STATES) | {"lost", "left"}


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(body: dict) -> bool:
    """A worker's `slots` and `state`, when present, are in the protocol's range (1..MAX_SLOTS, WORKER_STATES)."""
    slots, state = body.get("slots"), body.get("state")
    return (slots is None or _int(slots) and 1 <= slots <= p.MAX_SLOTS) and (state is None or state in p.WORKER_STATES)


def _valid_worker(entry: dict) -> bool:
    """The orchestrator's test of one worker entry (READY `workers` item, WORKER joined body)."""
    wid = entry["id"] if "id" in entry else entry.get("worker_id")
    return isinstance(wid, str) and isinstance(entry.get("model"), str) and _int(entry.get("slots")) and _in_range(entry)


class OrchestratorModel:
    """What the orchestrator counts and answers for each message of fuzz peers playing hives."""

    def __init__(self):
        self.by_identity: dict[bytes, str] = {}
        self.hives: dict[str, dict] = {}    # id -> identity, ready, session
        self.workers: dict[str, dict] = {}  # id -> hive, session, hive_session, gone (lost/left)

    def registered(self, ident: bytes) -> bool:
        hid = self.by_identity.get(ident)
        return hid is not None and self.hives[hid]["ready"]

    def expect(self, ident: bytes, frames: list[bytes]) -> tuple[list[str], list[str]]:
        reason, command, body = decode_spec(frames)
        if reason:
            return [reason], ["error:" + reason]
        if command == p.READY:
            return self._ready(ident, body)
        if not self.registered(ident):
            return ([], []) if command == p.DISCONNECT else (["not_registered"], ["disconnect"])
        hive = self.hives[self.by_identity[ident]]
        if command == p.DISCONNECT:
            hive["ready"] = False
            self._gone(hive["id"], set())
        elif command in (p.REQUEST, p.CANCEL, p.PROVISION, p.SHUTDOWN):
            return ["unexpected_command"], ["error:unknown_command"]
        elif command == p.CAPACITY and body["state"] not in p.WORKER_STATES:
            return ["bad_body"], ["error:bad_body"]
        elif command == p.WORKER:
            return self._worker(hive, body)
        return [], []

    def _ready(self, ident: bytes, body: dict):
        if body.get("role") != "hive":
            return ["bad_body"], ["error:bad_body"]
        hid, session = body["id"], body.get("session") if isinstance(body.get("session"), str) else None
        hive = self.hives.setdefault(hid, {"id": hid, "identity": ident, "ready": False, "session": None})
        if not (hive["ready"] and session and hive["session"] == session and hive["identity"] == ident):
            if self.by_identity.get(hive["identity"]) == hid:
                del self.by_identity[hive["identity"]]
            hive.update(identity=ident, ready=True, session=session or None)
        self.by_identity[ident] = hid
        reasons, replies, listed = [], ["ready"], set()
        for entry in body.get("workers") if isinstance(body.get("workers"), list) else []:
            if not isinstance(entry, dict) or not _valid_worker(entry):
                reasons.append("bad_body")
                replies.append("error:bad_body")
                continue
            wid = entry["id"] if "id" in entry else entry["worker_id"]
            listed.add(wid)
            if not self._same_session(hive, wid, entry.get("session")):
                self._register(hive, wid, entry.get("session"))
        self._gone(hid, listed)
        return reasons, replies

    def _worker(self, hive: dict, body: dict):
        event, wid = body["event"], body["worker_id"]
        if event == "joined":
            if self._same_session(hive, wid, body.get("session")):
                return [], []
            if not _valid_worker(dict(body, id=wid)):
                return ["bad_body"], ["error:bad_body"]
            self._register(hive, wid, body.get("session"))
            return [], []
        worker = self.workers.get(wid)
        if worker is None or worker["hive"] != hive["id"]:
            return [], []
        if event in ("lost", "left"):
            worker["gone"] = True
        elif event not in ("unhealthy", "healthy"):
            return ["bad_body"], ["error:bad_body"]
        return [], []

    def _same_session(self, hive: dict, wid: str, session) -> bool:
        w = self.workers.get(wid)
        return (w is not None and isinstance(session, str) and session == w["session"] and hive["session"] is not None
                and w["hive_session"] == hive["session"] and w["hive"] == hive["id"] and not w["gone"])

    def _register(self, hive: dict, wid: str, session) -> None:
        self.workers[wid] = {"hive": hive["id"], "session": session if isinstance(session, str) and session else None,
                             "hive_session": hive["session"], "gone": False}

    def _gone(self, hid: str, keep: set) -> None:
        """The hive's workers not in `keep` are lost or left."""
        for wid, worker in self.workers.items():
            if worker["hive"] == hid and wid not in keep:
                worker["gone"] = True


class HiveModel:
    """What a hive counts and answers for each message of fuzz peers playing workers."""

    def __init__(self):
        self.workers: set[bytes] = set()

    def registered(self, ident: bytes) -> bool:
        return ident in self.workers

    def expect(self, ident: bytes, frames: list[bytes]) -> tuple[list[str], list[str]]:
        reason, command, body = decode_spec(frames)
        if reason:
            return [reason], ["error:" + reason]
        known = ident in self.workers
        if command in (p.PARTIAL, p.FINAL, p.ERROR) and known:
            return [], []  # job frames of jobs this hive does not track: dropped and counted as stale
        if command == p.READY:
            if body["role"] != "worker" or body["id"].encode() != ident or not isinstance(body.get("model"), str) \
                    or not _in_range(body):
                return ["bad_body"], ["error:bad_body"]
            self.workers.add(ident)
            return [], ["ready"]
        if not known:
            return ([], []) if command == p.DISCONNECT else (["not_registered"], ["disconnect"])
        if command in (p.HEARTBEAT, p.CAPACITY):
            return ([], []) if _in_range({"state": body.get("state")}) else (["bad_body"], ["error:bad_body"])
        if command == p.DISCONNECT:
            self.workers.discard(ident)
            return [], []
        return ["unexpected_command"], ["error:unknown_command"]
