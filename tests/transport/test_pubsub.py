"""PUB/SUB: fan-out in order, topic filters, slow-subscriber drops counted and warned, late joiners."""

from __future__ import annotations

import logging

import pytest

from services.transport import PublisherTransport, SubscriberTransport, TransportOptions, TransportTimeout

pytestmark = pytest.mark.timeout(60)
COUNT = 10_000


def collect(sub: SubscriberTransport, count: int, out: list, idle_s: float = 5.0) -> None:
    """Receive until count messages arrived or nothing came for idle_s seconds."""
    while len(out) < count:
        message = sub.receive_with_topic(idle_s)
        if message is None:
            return
        out.append(message)


def test_three_subscribers_each_receive_every_message_in_order(make, threads):
    # HWM above the message count: this test is about fan-out and order, not about overload
    # (a subscriber thread can be descheduled for a while under the GIL).
    options = TransportOptions(linger_ms=0, high_water_mark=COUNT * 2)
    pub = make(PublisherTransport, options)
    endpoint = pub.bind("tcp://127.0.0.1:*")
    subs = [make(SubscriberTransport, options) for _ in range(3)]
    for sub in subs:
        sub.connect(endpoint)
    pub.wait_for_subscribers(3, timeout=10)  # readiness handshake: no late-joiner loss
    received: list[list] = [[] for _ in subs]
    workers = [threads(collect, sub, COUNT, out) for sub, out in zip(subs, received)]
    for i in range(COUNT):
        assert pub.send(b"%d" % i, b"seq")
    for worker in workers:
        worker.join(30)
    expected = [(b"seq", b"%d" % i) for i in range(COUNT)]
    for n, got in enumerate(received):
        assert len(got) == COUNT, f"subscriber {n} received {len(got)} of {COUNT}"
        assert got == expected, f"subscriber {n} received messages out of order"
    stats = pub.get_stats()
    assert stats["sent"] == COUNT and stats["dropped"] == 0 and stats["subscriptions"] == 3
    assert [s.get_stats()["received"] for s in subs] == [COUNT] * 3


def test_topic_filter_delivers_only_matching_topics(make, address):
    options = TransportOptions(linger_ms=0, high_water_mark=0)
    pub = make(PublisherTransport, options)
    endpoint = pub.bind(address("ipc", "filter"))
    filters = {"all": "", "a": "a.", "bc": ["b.", "c."]}
    subs = {name: make(SubscriberTransport, options.replace(subscribe_filter=f)) for name, f in filters.items()}
    for sub in subs.values():
        sub.connect(endpoint)
    pub.wait_for_subscribers(4, timeout=10)  # "all" and "a" subscribe once, "bc" twice
    topics = ["a.one", "b.two", "c.three", "d.four", "ab.five"]
    sent = [(t.encode(), b"%d" % i) for i in range(200) for t in [topics[i % len(topics)]]]
    for topic, payload in sent:
        pub.send(payload, topic)
    for name, sub in subs.items():
        prefixes = [p.encode() for p in ([filters[name]] if isinstance(filters[name], str) else filters[name])]
        expected = [m for m in sent if any(m[0].startswith(p) for p in prefixes)]
        got: list = []
        collect(sub, len(expected), got, idle_s=5)
        assert got == expected, f"subscriber {name!r} got the wrong messages"
        assert sub.receive(0.1) is None, f"subscriber {name!r} got an extra message"


def test_hwm_drop_is_counted_per_topic_and_warned_once_per_interval(make, caplog):
    options = TransportOptions(linger_ms=0, high_water_mark=10, drop_warning_interval_s=60)
    pub = make(PublisherTransport, options)
    sub = make(SubscriberTransport, options)  # never reads while we publish: the slow subscriber
    sub.connect(pub.bind("tcp://127.0.0.1:*"))
    pub.wait_for_subscribers(1, timeout=10)
    caplog.set_level(logging.WARNING, logger="services.transport.zeromq")
    attempts = 20_000
    outcomes = [pub.send(b"x" * 100, "slow.topic" if i % 2 else "other") for i in range(attempts)]
    stats = pub.get_stats()
    assert stats["dropped"] > 0, "nothing was dropped: the HWM was never reached"
    assert stats["sent"] + stats["dropped"] == attempts and stats["sent"] == sum(outcomes)
    assert sum(stats["dropped_by_topic"].values()) == stats["dropped"]
    assert set(stats["dropped_by_topic"]) == {"slow.topic", "other"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "slow subscriber" in r.getMessage()]
    assert len(warnings) == 2, "expected one rate-limited warning per topic"
    assert {"slow.topic", "other"} == {r.topic for r in warnings}
    assert all(r.topic in r.getMessage() for r in warnings)
    received = 0
    while sub.receive(0.5) is not None:
        received += 1
    assert received == stats["sent"], "a message was lost without being counted as dropped"


def test_late_joiner_misses_earlier_messages(make, address):
    options = TransportOptions(linger_ms=0)
    pub = make(PublisherTransport, options)
    endpoint = pub.bind(address("inproc", "late"))
    for i in range(100):
        pub.send(b"early %d" % i)  # no subscriber yet: PUB/SUB semantics drop these
    sub = make(SubscriberTransport, options)
    sub.connect(endpoint)
    pub.wait_for_subscribers(1, timeout=10)
    pub.send(b"late")
    assert sub.receive(5) == b"late"
    assert sub.receive(0.1) is None


def test_wait_for_subscribers_times_out_with_a_message(make):
    pub = make(PublisherTransport)
    pub.bind("tcp://127.0.0.1:*")
    with pytest.raises(TransportTimeout, match="0 of 2 subscriptions"):
        pub.wait_for_subscribers(2, timeout=0.2)


def test_unsubscribe_stops_delivery(make, address):
    options = TransportOptions(linger_ms=0)
    pub = make(PublisherTransport, options)
    sub = make(SubscriberTransport, options.replace(subscribe_filter="t"))
    sub.connect(pub.bind(address("inproc", "unsub")))
    pub.wait_for_subscribers(1, timeout=10)
    sub.unsubscribe("t")
    sub.subscribe("u")
    # Subscription changes travel to the publisher asynchronously: publish until a "u" arrives.
    first = None
    for attempt in range(500):
        pub.send(b"t%d" % attempt, "t")
        pub.send(b"u%d" % attempt, "u")
        first = sub.receive_with_topic(0.01)
        while first is not None and first[0] != b"u":
            first = sub.receive_with_topic(0.01)
        if first is not None:
            break
    assert first is not None, "the new subscription never reached the publisher"
    while sub.receive(0.05) is not None:  # drain what was published during the switch
        pass
    pub.send(b"after", "t")
    pub.send(b"end", "u")
    assert sub.receive_with_topic(5) == (b"u", b"end")
