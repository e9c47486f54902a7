"""The link from a hive or worker to its upstream ROUTER, the role zguide's `mdwrkapi` plays.

`UpstreamPeer` owns the DEALER (CURVE client when keys are given), the READY handshake with a
fresh session per connection, heartbeats and the upstream's liveness (our own stalled loop is
credited, not counted as its silence), reconnect with backoff, and the dispatch of inbound
commands to the role's table {command: handler(body, frames)}.  HEARTBEAT (any frame is life)
and the READY ack are the peer's own; the role only handles what a command means to it.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Awaitable, Callable

import zmq

from services import protocol as p
from services.common.heartbeat import Backoff, Liveness, StallClock
from services.common.logs import OncePerPeer
from services.curve import CurveKeys
from services.transport.loop import LoopSocket, make_dealer

Handler = Callable[[dict, list], None]
BURST = 64  # frames handled back to back before the receive loop lets the tick loop (and HTTP) run


def _never() -> bool:
    return False


def _always() -> bool:
    return True


def _nothing(*_args) -> None:
    return None


class UpstreamPeer:
    """One DEALER link to an upstream ROUTER: handshake, heartbeats, loss, reconnect and command dispatch.

    The roles differ in a few ways a shared class keeps as parameters:
    `keep_time_unregistered` (a hive's beat clock and stall credit run while unregistered, for its
    workers; a worker's only while registered), `catch_handler_errors` (the hive logs a failing
    handler itself; a worker leaves it to the LoopSocket), `count_reply_drops` (whether a failed
    ERROR reply to a malformed frame counts as a drop), `muted` (a hung worker neither reads,
    sends nor ticks) and `reply` (how an ERROR about an unexpected command goes out).
    Both roles answer SHUTDOWN the same way (`on_shutdown(grace_s)` within the upstream's grace, ours
    when it gives none) and log the upstream's ERROR once per code; a role's own handler overrides either.
    """

    def __init__(self, ctx: zmq.Context, *, identity: str, address: str, role: str, upstream: str, event: str,
                 interval_s: float, liveness: int, curve: CurveKeys | None, log: logging.Logger,
                 handlers: dict[bytes, Handler], ready_fields: Callable[[], dict],
                 heartbeat_fields: Callable[[], dict], on_registered: Callable[[], None],
                 on_lost: Callable[[str], None], on_bad_frame: Callable[[p.ProtocolError], None],
                 on_drop: Callable[[], None], on_tick: Callable[[float, bool, float], None] = _nothing,
                 muted: Callable[[], bool] = _never, may_register: Callable[[], bool] = _always,
                 reply: Callable[[bytes, dict], object] | None = None, silence: str = "peer",
                 keep_time_unregistered: bool = False, catch_handler_errors: bool = False,
                 count_reply_drops: bool = True, burst: int = BURST,
                 on_shutdown: Callable[[float], Awaitable] | None = None, grace_s: float = 2.0):
        self.ctx, self.identity, self.address, self.curve = ctx, identity, address, curve
        self.role, self.upstream, self.event, self.silence = role, upstream, event, silence
        self.interval_s = interval_s
        self.log = log
        self.on_shutdown, self.grace_s = on_shutdown, grace_s
        self.rejections = OncePerPeer()
        self.table: dict[bytes, Handler] = {p.HEARTBEAT: _nothing, p.READY: self.accept_ready,
                                            p.ERROR: self.log_rejection,
                                            **({p.SHUTDOWN: self.shut_down} if on_shutdown else {}), **handlers}
        self.ready_fields, self.heartbeat_fields = ready_fields, heartbeat_fields
        self.on_registered, self.on_lost = on_registered, on_lost
        self.on_bad_frame, self.on_drop = on_bad_frame, on_drop
        self.on_tick, self.muted, self.may_register = on_tick, muted, may_register
        self.reply = reply or self.send
        self.keep_time_unregistered = keep_time_unregistered
        self.catch_handler_errors = catch_handler_errors
        self.count_reply_drops = count_reply_drops
        self.burst = burst
        self.liveness = Liveness(interval_s, liveness)
        self.backoff = Backoff()
        self.sock: LoopSocket | None = None
        self.registered = False
        self.next_ready_at = 0.0
        self.session = ""  # random per connection: a READY resent on it is recognised as a repeat
        self.ready_since: float | None = None  # first READY on the current connection still unanswered
        self._ready_fut: asyncio.Future | None = None
        self.stall: StallClock | None = None

    # ---- the upstream's SHUTDOWN and ERROR -----------------------------------------------------

    def shut_down(self, body: dict, frames: list) -> None:
        """SHUTDOWN: run on_shutdown within the upstream's grace_s (ours when it gives none or a bad one)."""
        grace = body.get("grace_s")
        valid = isinstance(grace, (int, float)) and not isinstance(grace, bool) and grace >= 0
        asyncio.ensure_future(self.on_shutdown(float(grace) if valid else self.grace_s))

    def log_rejection(self, body: dict, frames: list) -> None:
        """ERROR from the upstream (it rejected one of our frames): log it once per code."""
        if self.rejections.first(self.upstream, body["code"]):
            self.log.warning(f"{self.upstream} rejected a frame", extra={"event": f"{self.event}_error",
                                                                         "code": body["code"],
                                                                         "detail": body["message"]})

    # ---- connection --------------------------------------------------------------------------

    def connect(self) -> None:
        """(Re)create the DEALER to the upstream (dropping anything queued) with a new session."""
        if self.sock is not None:
            self.sock.close(linger=0)  # also cancels a READY still waiting for the connection
        self.sock = LoopSocket(make_dealer(self.ctx, self.identity, self.address, self.interval_s,
                                           self.liveness.expiry_s, self.curve, self.upstream),
                               self.on_frames, burst=self.burst, name=self.event)
        self.session = secrets.token_hex(8)
        self.ready_since = None
        self._ready_fut = None

    def close(self, linger: int) -> None:
        """Close the DEALER (linger ms lets the last frames leave)."""
        if self.sock is not None:
            self.sock.close(linger=linger)

    def kick(self) -> None:
        """Schedule a drain of the DEALER: a safety net against a lost edge of ZeroMQ's FD."""
        if self.sock is not None:
            self.sock.kick()

    def lose(self, reason: str) -> None:
        """Forget the registration, let the role clean up, recreate the DEALER and re-register after a backoff."""
        self.registered = False
        self.on_lost(reason)
        self.connect()
        self.next_ready_at = time.monotonic() + max(self.interval_s, self.backoff.next_delay())

    # ---- sending -----------------------------------------------------------------------------

    def send(self, command: bytes, body: dict) -> bool:
        """Send one frame upstream unless muted; count a drop; True when the frame was queued."""
        return self.send_frames(p.encode(command, body))

    def send_frames(self, frames: list, count: bool = True) -> bool:
        """Send already-encoded frames upstream unless muted; count a drop unless told not to."""
        if self.muted() or self.sock is None:
            return False
        if not self.sock.send(frames):
            if count:
                self.on_drop()
            return False
        return True

    def send_ready(self) -> None:
        """Send READY with our session; it waits for the connection, and no second one queues behind it."""
        if self.muted() or self.sock is None or (self._ready_fut is not None and not self._ready_fut.done()):
            return
        self._ready_fut = self.sock.send_when_connected(p.encode(p.READY, {
            "role": self.role, "id": self.identity, "session": self.session, **self.ready_fields()}))

    def retry_registration(self, now: float) -> None:
        """Resend READY when due, on a fresh DEALER once one went unanswered for an expiry (half-open link).

        A READY left unanswered for a whole expiry means the connection may never complete (a
        connect or handshake that hangs, a peer that vanished): the DEALER is recreated so the next
        attempt starts from a new TCP connection.  Resends are never closer than the heartbeat interval.
        """
        if now < self.next_ready_at:
            return
        if self.ready_since is not None and now - self.ready_since >= self.liveness.expiry_s:
            self.log.info(f"no READY ack from the {self.upstream}; reconnecting",
                          extra={"event": f"{self.event}_reconnect", "waited_s": round(now - self.ready_since, 3)})
            self.connect()
        self.send_ready()
        if self.ready_since is None:
            self.ready_since = now
        self.next_ready_at = now + max(self.interval_s, self.backoff.next_delay())

    # ---- receiving ---------------------------------------------------------------------------

    def on_frames(self, frames: list) -> None:
        """Handle one message from the upstream (called by the LoopSocket): any frame counts as life."""
        if self.muted():
            return
        self.liveness.touch()
        try:
            msg = p.decode(frames)
        except p.ProtocolError as exc:
            self.on_bad_frame(exc)
            self.send_frames(p.encode(p.ERROR, p.error_body(exc.code, exc.reason)), count=self.count_reply_drops)
            return
        if not self.catch_handler_errors:
            self.dispatch(msg.command, msg.body, frames)
            return
        try:
            self.dispatch(msg.command, msg.body, frames)
        except Exception:  # a bug must not stop the relay
            self.log.exception(f"{self.event} frame failed", extra={"event": "handler_error", "command": msg.name})

    def dispatch(self, command: bytes, body: dict, frames: list) -> None:
        """Run the handler of a decoded command; answer ERROR unknown_command when the role has none."""
        handler = self.table.get(command)
        if handler is None:
            self.reply(p.ERROR, p.error_body(p.UNKNOWN_COMMAND,
                                             f"{p.COMMAND_NAMES[command]} not expected by a {self.role}"))
            return
        handler(body, frames)

    def accept_ready(self, body: dict, frames: list) -> None:
        """Take the upstream's READY ack (a repeat, for a READY resent on the same session, changes nothing)."""
        if self.registered:
            return
        self.registered = True
        self.ready_since = None
        self.backoff.reset()
        self.on_registered()

    # ---- periodic ----------------------------------------------------------------------------

    async def tick_loop(self) -> None:
        """Every interval/4: heartbeat the upstream, credit our own stalls, run the role's tick, watch the link.

        A late tick means our own loop (or process) was stalled: that time is credited to the
        upstream instead of counting as its silence, and the heartbeat goes out before the check.
        The role's `on_tick(now, beat, late)` runs after the heartbeat and before the loss check.
        """
        interval = self.interval_s
        stall = self.stall = StallClock(interval / 4)
        next_beat = 0.0
        while True:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            late = stall.tick()
            self.kick()
            if self.muted():
                continue
            steady = self.registered or self.keep_time_unregistered
            beat = steady and now >= next_beat
            if beat:
                if self.registered:
                    self.send(p.HEARTBEAT, self.heartbeat_fields())
                next_beat = now + interval
            if not steady:
                late = 0.0
            if late:
                self.liveness.credit(late)
                if late >= self.liveness.expiry_s / 2:
                    self.log.warning(f"event loop stalled; not counting it as {self.silence} silence",
                                     extra={"event": "loop_stalled", "stalled_s": round(late, 3)})
            self.on_tick(now, beat, late)
            if self.registered:
                if self.liveness.expired():
                    self.lose("silent")
            elif self.may_register():
                self.retry_registration(now)
