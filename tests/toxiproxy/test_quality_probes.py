"""The probes behind verify() of reset_peer, limit_data, blackhole, slicer and slow_close (harness/nemesis/quality_probes.py), on
loopback through a proxy to the steering's Sink: each holds with its toxic on and fails without it."""
import socket

import pytest

import harness.nemesis.protocol  # noqa: F401 - first: it registers the kinds that import steering
from harness.nemesis.quality_probes import probe_limit, probe_reset, probe_silent, probe_slow_close, probe_sliced
from harness.nemesis.steering import Sink
from harness.toxiproxy import make_toxic


def tcp() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


@pytest.fixture()
def twin(toxi):
    """(add(toxic body), listen address) of a proxy in front of a Sink on 127.0.0.1."""
    server, _ = toxi
    sink = Sink(tcp(), "127.0.0.1")
    proxy = server.call(server.create({"name": "twin", "listen": "127.0.0.1:0", "upstream": sink.addr}))
    yield (lambda body: server.call(lambda: proxy.add_toxic(make_toxic(body)))), proxy.listen
    sink.close()


def test_reset_probe_holds_only_with_reset_peer(twin):
    add, addr = twin
    held, ev = probe_reset(tcp, "127.0.0.1", addr, 1.0)
    assert not held and ev["ended"] == "eof" and ev["bytes"] == 4096, ev
    add({"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 100}})
    held, ev = probe_reset(tcp, "127.0.0.1", addr, 2.0)
    assert held and ev["bytes"] == 0 and ev["after_s"] >= 0.09, ev


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_limit_probe_holds_only_with_limit_data(twin, stream):
    add, addr = twin
    held, ev = probe_limit(tcp, "127.0.0.1", addr, stream, 5000, 3)
    assert not held, ev
    add({"type": "limit_data", "stream": stream, "attributes": {"bytes": 5000}})
    held, ev = probe_limit(tcp, "127.0.0.1", addr, stream, 5000, 3)
    assert held, ev
    if stream == "downstream":
        assert ev["bytes"] == 5000, ev


def test_limit_probe_fails_on_another_limit(twin):
    add, addr = twin
    add({"type": "limit_data", "stream": "downstream", "attributes": {"bytes": 8000}})
    held, ev = probe_limit(tcp, "127.0.0.1", addr, "downstream", 5000, 3)
    assert not held and ev["bytes"] == 8000, ev


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_silent_probe_holds_only_with_a_blackhole(twin, stream):
    add, addr = twin
    held, ev = probe_silent(tcp, "127.0.0.1", addr, 0.3)
    assert not held and ev["bytes"] == 1000, ev
    add({"type": "timeout", "stream": stream, "attributes": {"timeout": 0}})
    held, ev = probe_silent(tcp, "127.0.0.1", addr, 0.3)
    assert held and ev["bytes"] == 0, ev


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_slicer_probe_holds_only_with_a_slicer(twin, stream):
    add, addr = twin
    held, ev = probe_sliced(tcp, "127.0.0.1", addr, stream, 4096, 64, 1000, 5)
    assert not held and ev["bytes"] == 4096, ev
    add({"type": "slicer", "stream": stream, "attributes": {"average_size": 64, "size_variation": 32, "delay": 1000}})
    held, ev = probe_sliced(tcp, "127.0.0.1", addr, stream, 4096, 64, 1000, 5)
    assert held and ev["took_s"] >= 0.0315, ev


def test_slicer_probe_fails_on_the_other_stream(twin):
    add, addr = twin
    add({"type": "slicer", "stream": "upstream", "attributes": {"average_size": 64, "size_variation": 32, "delay": 1000}})
    held, ev = probe_sliced(tcp, "127.0.0.1", addr, "downstream", 4096, 64, 1000, 5)
    assert not held, ev


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_slow_close_probe_holds_only_with_a_slow_close(twin, stream):
    add, addr = twin
    held, ev = probe_slow_close(tcp, "127.0.0.1", addr, stream, 300, 3)
    assert not held and ev["close_gap_s"] < 0.27, ev
    add({"type": "slow_close", "stream": stream, "attributes": {"delay": 300}})
    held, ev = probe_slow_close(tcp, "127.0.0.1", addr, stream, 300, 3)
    assert held and ev["close_gap_s"] >= 0.27, ev


def test_probes_fail_when_nothing_listens():
    s = tcp()
    s.bind(("127.0.0.1", 0))
    addr = f"127.0.0.1:{s.getsockname()[1]}"
    s.close()
    assert not probe_reset(tcp, "127.0.0.1", addr, 0.5)[0]
    assert not probe_limit(tcp, "127.0.0.1", addr, "downstream", 10, 0.5)[0]
    assert not probe_silent(tcp, "127.0.0.1", addr, 0.2)[0]
    assert not probe_sliced(tcp, "127.0.0.1", addr, "downstream", 4096, 64, 1000, 0.5)[0]
    assert not probe_slow_close(tcp, "127.0.0.1", addr, "upstream", 100, 0.5)[0]
