"""EventSubscriber (services/stack_events.py, re-exported by apiary_suite.events) against a local PUB: capture,
find/wait_for by mark or monotonic instant with a naming message, gap detection."""
import time

import pytest
import zmq

from apiary_suite import events as suite_events
from services.stack_events import EventSubscriber, EventTimeout, find_gaps, in_order
from services.protocol import encode_event


@pytest.fixture()
def pub():
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(0)


def test_capture_wait_and_gaps(pub):
    sock, url = pub
    sub = EventSubscriber(url).start(connect_timeout_s=3)
    try:
        assert sub.connected
        for seq in (1, 2, 3, 5):
            sock.send_multipart(encode_event("job.completed" if seq != 3 else "worker.lost", seq,
                                             {"job_id": f"j{seq}", "worker_id": "w1"}))
        ev = sub.wait_for("worker.", timeout_s=3, worker_id="w1")
        assert ev["seq"] == 3
        sub.wait_for("job.completed", timeout_s=3, count=3)
        assert find_gaps(sub.events) == [{"after": 3, "next": 5, "missing": 1}] == sub.gaps()
        assert in_order(sub.events)
        with pytest.raises(EventTimeout, match="hive.lost"):
            sub.wait_for("hive.lost", timeout_s=0.2)
        sock.send_multipart([b"job.completed", b"not json"])
        deadline = time.monotonic() + 2
        while not sub.malformed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sub.malformed and sub.malformed[0]["error"] == "bad_body"
    finally:
        sub.stop()


def test_topic_filter(pub):
    sock, url = pub
    sub = EventSubscriber(url, topics=("job.",)).start(connect_timeout_s=3)
    try:
        sock.send_multipart(encode_event("worker.lost", 1, {}))
        sock.send_multipart(encode_event("job.accepted", 2, {"job_id": "j"}))
        sub.wait_for("job.accepted", timeout_s=3)
        assert [e["topic"] for e in sub.events] == ["job.accepted"]
    finally:
        sub.stop()


def test_seq_reset_is_not_a_gap():
    assert find_gaps([{"seq": 7}, {"seq": 8}, {"seq": 0}, {"seq": 1}]) == []


def test_the_suite_and_the_launcher_share_one_subscriber():
    assert suite_events.EventSubscriber is EventSubscriber and suite_events.EventTimeout is EventTimeout


def test_find_and_wait_for_after_a_monotonic_instant(pub):
    sock, url = pub
    with EventSubscriber(url) as sub:
        assert sub.connected
        sock.send_multipart(encode_event("worker.lost", 1, {"worker_id": "w1"}))
        first = sub.wait_for("worker.lost", timeout_s=3, worker_id="w1")
        assert first["_received"] <= time.monotonic() and abs(first["_arrived"] - time.time()) < 5
        cut = time.monotonic()
        assert sub.find("worker.lost", after=cut) is None, "an event received before `after` was matched"
        assert sub.find("worker.lost", worker_id="w1") is first
        sock.send_multipart(encode_event("worker.lost", 2, {"worker_id": "w2"}))
        late = sub.find("worker.lost", timeout_s=3, after=cut)
        assert late is not None and late["seq"] == 2 and late["_received"] >= cut
        assert [e["seq"] for e in sub.matching("worker.", after=cut)] == [2]
        with pytest.raises(EventTimeout) as raised:
            sub.wait_for("worker.lost", timeout_s=0.2, after=cut, worker_id="w1")
        msg = str(raised.value)
        assert "'worker.lost' with {'worker_id': 'w1'}" in msg and "got 0" in msg and "['worker.lost']" in msg
        assert f"after t={cut:.3f}" in msg
