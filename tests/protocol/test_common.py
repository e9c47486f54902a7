"""services.common: liveness, backoff, config parsing, JSON logs."""
import json
import logging

import pytest

from services.common import config
from services.common.heartbeat import Backoff, Liveness, PeerLiveness
from services.common.logs import JsonFormatter, OncePerPeer


class Clock:
    """A manual clock for deterministic liveness tests."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_liveness_expires_after_interval_times_liveness():
    """A peer is lost only after interval x liveness of silence; any frame revives it."""
    clock = Clock()
    live = Liveness(0.2, 4, clock)
    clock.now += 0.79
    assert not live.expired()
    clock.now += 0.02
    assert live.expired()
    live.touch()
    assert not live.expired() and live.age() == 0


def test_peer_liveness_purges_only_silent_peers():
    """purge_expired returns and forgets exactly the silent peers."""
    clock = Clock()
    peers = PeerLiveness(0.2, 4, clock)
    peers.touch("a")
    peers.touch("b")
    clock.now += 0.5
    peers.touch("b")
    clock.now += 0.5
    assert peers.purge_expired() == ["a"]
    assert "a" not in peers and "b" in peers
    assert peers.age("b") == pytest.approx(0.5)


def test_backoff_grows_to_bound_and_resets():
    """Delays double up to the maximum and start over after reset."""
    backoff = Backoff(0.05, 1.0, jitter=0.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.4]
    assert max(delays) == 1.0
    backoff.reset()
    assert backoff.next_delay() == 0.05


def test_config_errors_name_the_variable(monkeypatch):
    """A bad env value exits with a message naming the variable."""
    monkeypatch.setenv("APIARY_X", "abc")
    with pytest.raises(SystemExit, match="APIARY_X"):
        config.env_int("APIARY_X", 1)
    with pytest.raises(SystemExit, match="APIARY_X"):
        config.env_float("APIARY_X", 1.0)
    with pytest.raises(SystemExit, match="APIARY_X"):
        config.env_bool("APIARY_X", True)
    monkeypatch.setenv("APIARY_X", "-1")
    with pytest.raises(SystemExit, match=">= 0"):
        config.env_int("APIARY_X", 1, minimum=0)
    monkeypatch.delenv("APIARY_X")
    assert config.env_float("APIARY_X", 0.2) == 0.2


def test_json_formatter_keeps_extra_fields():
    """Log lines are JSON with service, event and any extra field such as job_id."""
    record = logging.LogRecord("svc", logging.INFO, __file__, 1, "job done", (), None)
    record.job_id = "j1"
    record.event = "job.completed"
    line = json.loads(JsonFormatter("orchestrator").format(record))
    assert line["service"] == "orchestrator" and line["job_id"] == "j1"
    assert line["event"] == "job.completed" and line["msg"] == "job done"


def test_once_per_peer():
    """Each (peer, reason) is reported once."""
    once = OncePerPeer()
    assert once.first("p", "bad_body") and not once.first("p", "bad_body")
    assert once.first("p", "too_large") and once.first("q", "bad_body")
