"""Cross-process traffic over TCP on 127.0.0.1, and a peer that vanishes without FIN (ZMTP heartbeats)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from services.transport import (PublisherTransport, PullTransport, PushTransport, RouterTransport,
                                TransportOptions)

pytestmark = pytest.mark.timeout(60)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKER = """
import sys
sys.path.insert(0, sys.argv[1])
from services.transport import PullTransport, PushTransport, TransportOptions
options = TransportOptions(linger_ms=2000)
with PullTransport(options) as tasks, PushTransport(options) as results:
    tasks.connect(sys.argv[2])
    results.connect(sys.argv[3])
    for _ in range(int(sys.argv[4])):
        results.send(tasks.receive(20) + b" done by %d" % __import__("os").getpid())
"""

SUBSCRIBER = """
import sys
sys.path.insert(0, sys.argv[1])
from services.transport import SubscriberTransport, PushTransport, TransportOptions
with SubscriberTransport(TransportOptions(linger_ms=0, high_water_mark=0)) as sub, \\
        PushTransport(TransportOptions(linger_ms=2000)) as report:
    sub.connect(sys.argv[2])
    report.connect(sys.argv[3])
    seq = [int(sub.receive(20)) for _ in range(int(sys.argv[4]))]
    report.send(b"ok" if seq == list(range(len(seq))) else b"out of order")
"""

DEALER = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from services.transport import DealerTransport, TransportOptions
dealer = DealerTransport(TransportOptions(linger_ms=0, identity="frozen", heartbeat_ivl_ms=50))
dealer.connect(sys.argv[2])
dealer.send(b"hello")
threading.Event().wait(30)  # stays connected until the test stops or kills it
"""


def spawn(code: str, *args: str) -> subprocess.Popen:
    """Start a Python child running code with args."""
    return subprocess.Popen([sys.executable, "-c", code, ROOT, *args])


def stop(proc: subprocess.Popen) -> None:
    """Kill proc if it is still running and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_push_pull_across_processes_over_tcp(make):
    options = TransportOptions(linger_ms=0)
    tasks, results = make(PushTransport, options), make(PullTransport, options)
    tasks_address = tasks.bind("tcp://127.0.0.1:*")
    results_address = results.bind("tcp://127.0.0.1:*")
    procs = [spawn(WORKER, tasks_address, results_address, "500") for _ in range(2)]
    try:
        tasks.wait_for_peers(2, timeout=20)
        tasks.send_many(b"%d" % i for i in range(1000))
        got = [results.receive(20) for _ in range(1000)]
        assert None not in got, "a result did not arrive within 20 s"
        assert sorted(int(m.split()[0]) for m in got) == list(range(1000))
        assert len({m.split(b" by ")[1] for m in got}) == 2, "both worker processes should have worked"
        for proc in procs:
            assert proc.wait(20) == 0
    finally:
        for proc in procs:
            stop(proc)


def test_pub_sub_fan_out_across_processes_over_tcp(make):
    pub = make(PublisherTransport, TransportOptions(linger_ms=0, high_water_mark=0))
    reports = make(PullTransport)
    endpoint = pub.bind("tcp://127.0.0.1:*")
    report_address = reports.bind("tcp://127.0.0.1:*")
    procs = [spawn(SUBSCRIBER, endpoint, report_address, "2000") for _ in range(3)]
    try:
        pub.wait_for_subscribers(3, timeout=20)
        for i in range(2000):
            assert pub.send(b"%d" % i, "n")
        assert sorted(reports.receive(20) for _ in procs) == [b"ok"] * 3
    finally:
        for proc in procs:
            stop(proc)


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_heartbeat_drops_a_peer_that_vanished_without_fin(make):
    # A SIGSTOPped process keeps its TCP connection open (the kernel still ACKs) but answers no
    # ZMTP PING: exactly what a powered-off host or a partition looks like before TCP notices.
    router = make(RouterTransport, TransportOptions(linger_ms=0, heartbeat_ivl_ms=50, heartbeat_timeout_ms=300))
    endpoint = router.bind("tcp://127.0.0.1:*")
    proc = spawn(DEALER, endpoint)
    try:
        assert router.receive_from(20) == (b"frozen", [b"hello"])
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while router.get_stats()["disconnects"] == 0:
            assert time.monotonic() < deadline, "the router did not drop the frozen peer within 10 s"
            router.receive(0.05)
        assert router.get_stats()["peers"] == 0
    finally:
        stop(proc)
