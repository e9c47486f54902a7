"""PUSH/PULL: no loss, no duplicate, a fair spread once every puller is connected; linger on close."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from services.transport import PullTransport, PushTransport, TransportError, TransportOptions, TransportTimeout

pytestmark = pytest.mark.timeout(60)
COUNT = 10_000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def drain(pull: PullTransport, out: list, stop_after_idle_s: float = 1.0) -> None:
    """Receive until nothing arrives for stop_after_idle_s seconds."""
    while True:
        payload = pull.receive(stop_after_idle_s)
        if payload is None:
            return
        out.append(int(payload))


def test_three_pullers_share_every_message_once_and_fairly(make, threads):
    options = TransportOptions(linger_ms=0)
    push = make(PushTransport, options)
    endpoint = push.bind("tcp://127.0.0.1:*")
    pullers = [make(PullTransport, options) for _ in range(3)]
    for pull in pullers:
        pull.connect(endpoint)
    # Readiness handshake: PUSH round-robins over the peers connected *when it sends*; without
    # this wait the first puller to connect would get everything sent before the others arrive.
    assert push.wait_for_peers(3, timeout=10) == 3
    received: list[list[int]] = [[] for _ in pullers]
    workers = [threads(drain, pull, out) for pull, out in zip(pullers, received)]
    assert push.send_many(b"%d" % i for i in range(COUNT)) == COUNT
    for worker in workers:
        worker.join(30)
    everything = [n for got in received for n in got]
    assert len(everything) == COUNT, f"received {len(everything)} of {COUNT}"
    assert sorted(everything) == list(range(COUNT)), "a message was lost or duplicated"
    for n, got in enumerate(received):
        assert got == sorted(got), f"puller {n} saw its share out of order"
        assert abs(len(got) - COUNT / 3) <= 0.2 * COUNT / 3, f"unfair spread: {[len(g) for g in received]}"
    assert push.get_stats()["sent"] == COUNT
    assert sum(p.get_stats()["received"] for p in pullers) == COUNT


def test_send_and_receive_batches(make, address):
    push, pull = make(PushTransport), make(PullTransport)
    push.connect(pull.bind(address("inproc", "batch")))
    push.send_many([b"a", b"b", b"c"])
    batch = pull.receive_many(10, timeout=5)
    while len(batch) < 3:
        batch += pull.receive_many(10, timeout=5)
    assert batch == [b"a", b"b", b"c"]
    assert pull.receive_many(10, timeout=0.05) == []
    assert pull.get_stats()["received"] == 3 and push.get_stats()["sent"] == 3


def test_wrong_direction_raises(make):
    with pytest.raises(TransportError, match="cannot receive"):
        make(PushTransport).receive(0)
    with pytest.raises(TransportError, match="cannot send"):
        make(PullTransport).send(b"x")


def test_wait_for_peers_times_out_naming_the_count(make):
    push = make(PushTransport)
    push.bind("tcp://127.0.0.1:*")
    with pytest.raises(TransportTimeout, match="0 of 2 peers"):
        push.wait_for_peers(2, timeout=0.2)


def test_wait_for_peers_refuses_inproc(make, address):
    push = make(PushTransport)
    push.bind(address("inproc", "peers"))
    with pytest.raises(TransportError, match="inproc"):
        push.wait_for_peers(1, timeout=0.1)


LINGER_CHILD = """
import sys
import time
sys.path.insert(0, sys.argv[1])
from services.transport import PushTransport, TransportOptions
push = PushTransport(TransportOptions(linger_ms=int(sys.argv[3]), reconnect_ivl_ms=20, reconnect_ivl_max_ms=20))
push.connect(sys.argv[2])  # nobody listens yet: the messages wait in the connect-side queue
for i in range(5):
    push.send(b"%d" % i)
push.close(None if sys.argv[4] == "option" else int(sys.argv[4]))
print("closed", flush=True)
"""  # then the interpreter exits: the shared context is terminated, honouring the linger


def close_in_child(endpoint: str, linger_option: int, close_argument: str) -> subprocess.Popen:
    """Start a child that queues 5 messages for endpoint and closes; return it once closed."""
    child = subprocess.Popen([sys.executable, "-c", LINGER_CHILD, ROOT, endpoint, str(linger_option),
                              close_argument], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "closed", "the child did not close its transport"
    return child


def test_linger_delivers_queued_messages_after_close(make, address):
    endpoint = address("ipc", "linger")
    child = close_in_child(endpoint, 5000, "option")
    try:
        pull = make(PullTransport)
        pull.bind(endpoint)  # the closed-but-lingering socket reconnects and flushes its queue
        assert [pull.receive(5) for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait(10)


@pytest.mark.parametrize("linger_option,close_argument", [(0, "option"), (5000, "0")])
def test_linger_zero_discards_queued_messages_on_close(make, address, linger_option, close_argument):
    endpoint = address("ipc", "nolinger")
    child = close_in_child(endpoint, linger_option, close_argument)
    try:
        assert child.wait(10) == 0, "the child did not exit cleanly"
        pull = make(PullTransport)
        pull.bind(endpoint)
        assert pull.receive(0.3) is None, "a message queued before close(linger 0) was delivered"
    finally:
        child.kill()
        child.wait(10)


def test_reconnects_are_counted_and_queued_messages_survive_them(make, address):
    endpoint = address("ipc", "reconnect")
    push = make(PushTransport, TransportOptions(linger_ms=0, reconnect_ivl_ms=20, reconnect_ivl_max_ms=20))
    first = PullTransport(TransportOptions(linger_ms=0))
    first.bind(endpoint)
    push.connect(endpoint)
    push.send(b"before")
    assert first.receive(5) == b"before"
    first.close()  # the peer goes away; PUSH notices, keeps its queue and reconnects by itself
    wait_until(lambda: push.get_stats()["disconnects"] >= 1, "the disconnect was not seen within 5 s")
    push.send(b"during")  # queued while nobody is there (anything in flight at the drop is lost)
    second = make(PullTransport)
    second.bind(endpoint)
    assert second.receive(5) == b"during"
    wait_until(lambda: push.get_stats()["reconnects"] >= 1, "the reconnect was not counted within 5 s")


def wait_until(condition, message: str, timeout: float = 5.0) -> None:
    """Poll condition every 20 ms until it holds; fail with message after timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)
