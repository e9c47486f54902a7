"""The ZAP handler (RFC 27) of one process: accept listed CURVE keys, refuse the rest, count every refusal.

libzmq asks the handler about each CURVE peer that completed the key exchange; a peer with an unknown key is
refused there with its address. A peer with no key (NULL mechanism) or a wrong server key never reaches ZAP:
the handshake fails first, which a socket monitor reports without the peer's address, so those refusals are
counted per link and logged once per link and reason.
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
import queue
import threading
from typing import Callable

import zmq
import zmq.utils.z85

from services.common.logs import OncePerPeer
from services.curve import CurveKeys

log = logging.getLogger("zap")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_ids = itertools.count()
_FAILURES = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
_KEY_ERRORS = {zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE,
               zmq.PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_HELLO, zmq.PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_INITIATE}


def handshake_reason(event: int, value: int) -> str:
    """Name a failed handshake: no-key (plain ZMTP), aborted (peer hung up mid-handshake), bad-key, bad-handshake.

    A plain peer is seen either way: when this side compares the greetings first, a mechanism mismatch;
    when the peer does, it hangs up and this side sees the handshake aborted.
    """
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "aborted"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "no-key"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value in _KEY_ERRORS:
        return "bad-key"
    return "bad-handshake"


class Gatekeeper:
    """ZAP handler thread plus handshake monitors for the CURVE server sockets of one zmq context."""

    def __init__(self, ctx: zmq.Context, keys: CurveKeys, count: Callable[[str, str], None] | None = None):
        """count(link, reason) is called once per refusal (a metrics counter); refusals are also kept here."""
        self.ctx, self.keys, self._count = ctx, keys, count
        self.refused: collections.Counter = collections.Counter()  # (link, reason) -> refusals
        self.accepted = 0
        self._once = OncePerPeer()
        self._pending: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_addr = f"inproc://apiary-zap-wake-{os.getpid()}-{next(_ids)}"
        self._wake: zmq.Socket | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._raw = {link: frozenset(zmq.utils.z85.decode(k) for k in allowed)  # ZAP hands over raw 32-byte keys
                     for link, allowed in keys.allowed.items()}

    def start(self, timeout_s: float = 5.0) -> "Gatekeeper":
        """Bind the ZAP endpoint in a thread (before any CURVE server socket binds); fail if it cannot."""
        self._wake = self.ctx.socket(zmq.PAIR)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.bind(self._wake_addr)
        self._thread = threading.Thread(target=self._run, name="apiary-zap", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"ZAP handler did not bind {ZAP_ENDPOINT} within {timeout_s} s")
        if self._error is not None:
            raise RuntimeError(f"ZAP handler could not bind {ZAP_ENDPOINT}: {self._error}")
        return self

    def watch(self, sock: zmq.Socket, link: str) -> None:
        """Count the failed handshakes (no key, wrong key) of a CURVE server socket as refusals on link."""
        address = f"inproc://apiary-zap-monitor-{os.getpid()}-{next(_ids)}"
        sock.monitor(address, _FAILURES)
        self._pending.put((address, link))
        self._wake.send(b"watch")

    def stop(self) -> None:
        """Stop the thread and close its sockets."""
        if self._thread is None:
            return
        try:
            self._wake.send(b"stop", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        self._thread.join(2.0)
        self._wake.close(0)
        self._thread = None

    def refusals(self) -> dict[str, int]:
        """Return refusals as {"link/reason": n}."""
        return {f"{link}/{reason}": n for (link, reason), n in sorted(self.refused.items())}

    def _refuse(self, link: str, reason: str, peer: str) -> None:
        self.refused[(link, reason)] += 1
        if self._count is not None:
            self._count(link, reason)
        if self._once.first(f"{link}:{peer}", reason):
            log.warning("ZeroMQ peer refused at the CURVE handshake", extra={
                "event": "curve.refused", "link": link, "reason": reason, "peer": peer})

    def _run(self) -> None:
        try:
            zap = self.ctx.socket(zmq.REP)
            zap.setsockopt(zmq.LINGER, 0)
            zap.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self._error = exc
            self._ready.set()
            return
        wake = self.ctx.socket(zmq.PAIR)
        wake.setsockopt(zmq.LINGER, 0)
        wake.connect(self._wake_addr)
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        monitors: dict[zmq.Socket, str] = {}
        self._ready.set()
        try:
            while True:
                for sock, _ in poller.poll():
                    if sock is zap:
                        zap.send_multipart(self._answer(zap.recv_multipart()))
                    elif sock is wake:
                        if wake.recv() == b"stop":
                            return
                        while not self._pending.empty():
                            address, link = self._pending.get()
                            mon = self.ctx.socket(zmq.PAIR)
                            mon.setsockopt(zmq.LINGER, 0)
                            mon.connect(address)
                            monitors[mon] = link
                            poller.register(mon, zmq.POLLIN)
                    else:
                        self._on_monitor(sock.recv_multipart(), monitors[sock])
        except zmq.ZMQError as exc:  # the context was terminated under us: the service is stopping
            log.info("ZAP handler stopped", extra={"event": "curve.zap_stopped", "error": str(exc)})
        finally:
            for sock in (zap, wake, *monitors):
                sock.close(0)

    def _on_monitor(self, frames: list[bytes], link: str) -> None:
        event = int.from_bytes(frames[0][:2], "little")
        value = int.from_bytes(frames[0][2:6], "little")
        endpoint = frames[1].decode(errors="replace") if len(frames) > 1 else "?"
        if event & _FAILURES:
            self._refuse(link, handshake_reason(event, value), f"(unnamed peer of {endpoint})")

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        """Judge one ZAP request: 200 for a listed CURVE key of this domain, 400 otherwise."""
        if len(frames) < 6:
            request_id = frames[1] if len(frames) > 1 else b""
            return [b"1.0", request_id, b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = frames[:6]
        credentials = frames[6:]
        role, _, link = domain.decode(errors="replace").partition(".")
        peer = address.decode(errors="replace") or "?"
        if role != self.keys.role or link not in self.keys.allowed:
            reason = "unknown-domain"
        elif mechanism != b"CURVE" or not credentials:
            reason = "no-key"
        elif credentials[0] not in self._raw[link]:
            reason = "unknown-key"
        else:
            self.accepted += 1
            return [version, request_id, b"200", b"OK", b"", b""]
        self._refuse(link or domain.decode(errors="replace"), reason, peer)
        return [version, request_id, b"400", reason.encode(), b"", b""]
