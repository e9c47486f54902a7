"""The stage kinds an example can use: source, pipe_source, worker and sink, built on services.transport.

Each stage runs the same code in a thread of the runner or in its own process. It reports
``ready`` (with the addresses it bound, so TCP ports chosen by the OS reach the other stages)
and finally ``result`` (what it sent or received) through a ``report(kind, data)`` callback.
Payloads are ``b"<id>|<filler>"``; workers append ``|<worker tag>`` so sinks can show the spread.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from services.transport import (PipeTransport, Transport, TransportClosed, TransportFactory, TransportTimeout,
                                protocol_of)

from . import spec as specs

GRACE_S = 0.3  # after a sink has everything it expects, it listens this long for duplicates


@dataclass
class StageContext:
    """What a running stage knows: the spec, its stage entry, replica number, addresses, stop flag."""

    spec: dict
    stage: dict
    replica: int
    addresses: dict[str, str]
    report: Callable[[str, Any], None]
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    @property
    def tag(self) -> str:
        """Name of this replica, e.g. worker-2."""
        return f"{self.stage['name']}-{self.replica}" if self.stage["replicas"] > 1 else self.stage["name"]

    def left(self) -> float:
        """Seconds left before the run's deadline."""
        return self.spec["timeout_s"] - (time.monotonic() - self.started)


def open_endpoint(ctx: StageContext, endpoint: str, direction: str) -> Transport:
    """Create the transport for endpoint: bind if this stage owns it, else connect."""
    config = {k: v for k, v in ctx.spec["endpoints"][endpoint].items() if k != "bind"}
    pubsub = config.get("pattern") == "pub_sub"
    role = {("out", True): "publisher", ("out", False): "push",
            ("in", True): "subscriber", ("in", False): "pull"}[(direction, pubsub)]
    options = dict(config.get("zeromq") or {})
    if role == "push":
        options.setdefault("send_timeout_ms", 200)  # see send_one: blocked sends re-check the stop flag
    if role == "subscriber":
        options["subscribe_filter"] = ctx.stage.get("subscribe_filter", "")
    mode = "bind" if ctx.spec["endpoints"][endpoint]["bind"] == ctx.stage["name"] else "connect"
    return TransportFactory.from_config({**config, "role": role, "mode": mode,
                                         "address": ctx.addresses[endpoint], "zeromq": options})


def bound(ctx: StageContext, transports: dict[str, Transport]) -> dict[str, str]:
    """Return {endpoint: actual address} for the endpoints this stage binds."""
    return {name: t.get_stats()["endpoints"][0] for name, t in transports.items()
            if ctx.spec["endpoints"][name]["bind"] == ctx.stage["name"]}


def wait_for_readers(ctx: StageContext, out: Transport, endpoint: str) -> None:
    """Readiness handshake before the first message: every subscriber or puller must be connected."""
    if ctx.spec["endpoints"][endpoint]["bind"] != ctx.stage["name"]:
        return
    if ctx.spec["endpoints"][endpoint].get("pattern") == "pub_sub":
        out.wait_for_subscribers(specs.subscriptions(ctx.spec, endpoint), timeout=ctx.left())
    elif protocol_of(ctx.addresses[endpoint]) != "inproc":  # inproc peers attach at connect()
        out.wait_for_peers(specs.connecting_peers(ctx.spec, endpoint), timeout=ctx.left())


def send_one(out: Transport, ctx: StageContext, index: int, payload: bytes) -> bool:
    """Send payload on out (with its topic on a publisher); False if dropped or the stage was stopped."""
    if out.kind == "publisher":
        return out.send(payload, specs.topic_of(ctx.spec, index))
    while not ctx.stop.is_set():  # a PUSH blocks while every puller is full: stay stoppable
        try:
            out.send(payload)
            return True
        except TransportTimeout:
            if ctx.left() <= 0:
                raise
    return False


def run_source(ctx: StageContext) -> None:
    """Emit messages ids 0..N-1 on the output endpoint."""
    endpoint = ctx.stage["output"]
    with open_endpoint(ctx, endpoint, "out") as out:
        ctx.report("ready", bound(ctx, {endpoint: out}))
        wait_for_readers(ctx, out, endpoint)
        filler = b"." * max(0, ctx.spec["payload_bytes"] - 8)
        sent = 0
        for i in range(ctx.spec["messages"]):
            if not i & 1023 and ctx.stop.is_set():
                break
            sent += send_one(out, ctx, i, b"%d|%s" % (i, filler))
        return hold_open(ctx, {"sent": sent, "stats": out.get_stats()})


def hold_open(ctx: StageContext, result: dict) -> None:
    """Report result, then keep the sender's sockets open until the runner says the sinks are done.

    Closing right after the last send relies on ZMQ_LINGER to deliver what is still queued, and
    libzmq 4.3 over ipc:// can drop queued messages for a slow peer despite LINGER
    (zeromq/libzmq#4660). An end-of-stream acknowledgement (here: the runner's stop) is the
    reliable way to know the consumers have everything.
    """
    ctx.report("result", result)
    ctx.stop.wait(max(0.0, ctx.left()))


def substitute(argv: list[str], spec: dict) -> list[str]:
    """Replace python with this interpreter and {messages}/{payload_bytes} with their values."""
    values = {"messages": spec["messages"], "payload_bytes": spec["payload_bytes"]}
    return [sys.executable if a == "python" else str(a).format(**values) for a in argv]


def run_pipe_source(ctx: StageContext) -> None:
    """Start the stage's command; forward every message it writes to its stdout onto the output endpoint."""
    endpoint = ctx.stage["output"]
    pipe_conf = ctx.stage.get("pipe") or {}
    with open_endpoint(ctx, endpoint, "out") as out:
        ctx.report("ready", bound(ctx, {endpoint: out}))
        wait_for_readers(ctx, out, endpoint)
        with PipeTransport.spawn(substitute(ctx.stage["command"], ctx.spec),
                                 framing=pipe_conf.get("framing", "length"),
                                 line_encoding=pipe_conf.get("line_encoding", "base64")) as pipe:
            sent = 0
            while ctx.left() > 0:
                try:
                    message = pipe.receive(ctx.left())
                except TransportClosed:
                    break
                if message is not None:
                    sent += send_one(out, ctx, int(message.split(b"|", 1)[0]), message)
        return hold_open(ctx, {"sent": sent, "stats": out.get_stats(), "child_exit": pipe.process.returncode})


def run_worker(ctx: StageContext) -> dict:
    """Forward messages from input to output, tagged with this replica's name, until stopped."""
    names = (ctx.stage["input"], ctx.stage["output"])
    with open_endpoint(ctx, names[0], "in") as inp, open_endpoint(ctx, names[1], "out") as out:
        ctx.report("ready", bound(ctx, dict(zip(names, (inp, out)))))
        tag = b"|" + ctx.tag.encode()
        forwarded = 0
        while not ctx.stop.is_set() and ctx.left() > 0:
            message = inp.receive(0.05)
            if message is not None:
                send_one(out, ctx, int(message.split(b"|", 1)[0]), message + tag)
                forwarded += 1
        return {"forwarded": forwarded, "stats": inp.get_stats()}


def run_sink(ctx: StageContext) -> dict:
    """Receive until every expected message arrived (then GRACE_S more for duplicates) or the deadline."""
    expect = len(specs.expected_ids(ctx.spec, ctx.stage))
    with open_endpoint(ctx, ctx.stage["input"], "in") as inp:
        ctx.report("ready", bound(ctx, {ctx.stage["input"]: inp}))
        ids: list[int] = []
        spread: dict[str, int] = {}
        grace_end = None
        while ctx.left() > 0 and not ctx.stop.is_set():
            if grace_end is None and len(ids) >= expect:
                grace_end = time.monotonic() + GRACE_S
            if grace_end is not None and time.monotonic() >= grace_end:
                break
            message = inp.receive(0.05)
            if message is None:
                continue
            parts = message.split(b"|")
            ids.append(int(parts[0]))
            if len(parts) > 2:
                spread[parts[-1].decode()] = spread.get(parts[-1].decode(), 0) + 1
        return {"ids": ids, "spread": spread, "stats": inp.get_stats()}


RUNNERS = {"source": run_source, "pipe_source": run_pipe_source, "worker": run_worker, "sink": run_sink}


def run_stage(ctx: StageContext) -> None:
    """Run the stage and report its result (or its error); never raises."""
    try:
        result = RUNNERS[ctx.stage["kind"]](ctx)
    except Exception as exc:  # reported to the runner, which prints it and fails the run
        ctx.report("ready", {})
        result = {"error": f"{type(exc).__name__}: {exc}"}
    if result is not None:  # sources report before holding their sockets open
        ctx.report("result", result)
