"""A soak phase that hangs is interrupted by its watchdog: the stacks are written, every fault is healed,
and the soak is judged failed with a 'finished' check naming the phase."""
import time
from pathlib import Path

from apiary_suite import soak
from apiary_suite.soak_load import LoadPlan


class Hung(Exception):
    pass


def test_a_hung_play_is_interrupted_healed_and_judged_failed(tmp_path: Path, monkeypatch):
    healed = []

    class Player:
        def __init__(self, stack, history):
            pass

        def play(self, schedule, deadline_s):
            time.sleep(30)                 # a fault call that never returns
            raise Hung("the watchdog did not fire")

        def results(self):
            return [{"index": 0, "status": "applied"}]

        def heal_all(self):
            healed.append(True)
            return []

    class Load:
        def __init__(self, *a, **k):
            pass

        def start(self, duration_s):
            return self

        def finish(self, s):
            pass

        def stop(self, s):
            from apiary_suite.soak_load import LoadStats
            return LoadStats()

    class Events:
        events: list = []

        def __init__(self, *a, **k):
            pass

        def start(self, s):
            return self

        def stop(self):
            pass

    class Stack:
        api_url, events_url, api_keys, services = "http://127.0.0.1:9", "tcp://127.0.0.1:9", {}, []

        def client_keys(self):
            return None

    import harness.nemesis.player as player_mod
    monkeypatch.setattr(player_mod, "FaultPlayer", Player)
    monkeypatch.setattr(soak, "SoakLoad", Load)
    monkeypatch.setattr(soak, "EventSubscriber", Events)
    monkeypatch.setattr(soak, "wait_recovered", lambda *a: 1.0)
    monkeypatch.setattr(soak, "read_ledgers", lambda *a: ({}, {}))
    monkeypatch.setattr(soak, "look_up_jobs", lambda *a: {})
    spec = soak.SoakSpec(seed=1, profile="selftest", duration_s=0.0, schedule=[],
                         plan=LoadPlan(try_timeout_s=0.1, max_tries=1))
    start = time.monotonic()
    policy = {"soak": {"max_recovery_s": 30, "min_availability": 0.5, "allow_unknown": False, "max_unverified_faults": 0}}
    monkeypatch.setattr(soak, "watchdog", _fast(soak.watchdog))
    result = soak.run_soak(Stack(), tmp_path, spec, policy, "rev", say=lambda s: None)
    assert time.monotonic() - start < 20
    assert healed == [True]
    assert not result["passed"] and not result["checks"]["finished"]["passed"]
    assert "play" in result["checks"]["finished"]["detail"]
    assert list(tmp_path.glob("stacks-*.txt")), "no thread stacks were written"


def _fast(make):
    """The watchdog with every limit cut to 1 s (the real limits are minutes)."""
    return lambda limit_s, out_dir, what: make(1.0, out_dir, what)
