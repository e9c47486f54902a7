"""Live frame fuzzing of the local stack: 100,000 generated messages to the orchestrator ROUTER and as many to a
hive ROUTER (bench.fuzz.campaign), then health, exact completions, no traceback, RSS, counters by reason.

The seed is fresh each run and printed; replay with APIARY_FUZZ_SEED=<seed>.  APIARY_FUZZ_FRAMES sets the count
per endpoint (default 100000, about 35 s for both on a 2-core machine; `python -m bench.fuzz` runs the same).
"""
from __future__ import annotations

import os
import secrets
import time

import pytest

from bench.fuzz import HiveModel, campaign, counters, delta, start_stack
from apiary_suite.fuzz import FrameFuzzer, FrameGenerator

FRAMES = int(os.environ.get("APIARY_FUZZ_FRAMES", "100000"))


@pytest.mark.slow
def test_live_frame_fuzz_of_the_orchestrator_and_a_hive_router():
    seed = int(os.environ.get("APIARY_FUZZ_SEED") or secrets.randbelow(2 ** 31))
    rerun = f"APIARY_FUZZ_SEED={seed} APIARY_FUZZ_FRAMES={FRAMES} .venv/bin/python -m pytest {__file__} -q"
    print(f"\nframe fuzz seed {seed}; rerun: {rerun}")
    t0 = time.monotonic()
    report = campaign(FRAMES, seed, log=print)
    seconds = time.monotonic() - t0
    for name, s in report["endpoints"].items():
        print(f"{name}: {s['messages']} messages, {s['seconds']} s, {s['messages_per_s']}/s, by class "
              f"{s['by_class']}, counted {s['counted']}")
    print(f"rss growth MiB {({n: r['growth_mib'] for n, r in report['rss'].items()})}; total {seconds:.0f} s")
    assert not report["failures"], f"seed {seed} (rerun: {rerun}):\n" + "\n".join(report["failures"])
    for name, s in report["endpoints"].items():
        assert s["messages"] >= FRAMES and sum(s["counted"].values()) > FRAMES / 3, name
        assert s["accepted"] > FRAMES / 10, f"{name}: too few messages got past the decoder and the state machine"
    assert report["traffic"]["ok"] > 0 and all(pr["served"] for pr in report["probes"])
    assert seconds < 300, f"the campaign took {seconds:.0f} s, over its 5 minute budget"


class _BlindHive(HiveModel):
    """A model that forgets that unregistered peers are answered DISCONNECT and counted not_registered."""

    def expect(self, ident, frames):
        reasons, replies = super().expect(ident, frames)
        return [r for r in reasons if r != "not_registered"], [r for r in replies if r != "disconnect"]


def test_the_comparison_catches_a_model_that_is_wrong():
    """Selftest: with a model that is wrong about one reason the counters' increase no longer matches."""
    with start_stack(keep=False) as stack:
        url = f"tcp://127.0.0.1:{stack.ports['hive-b']['router']}"
        before = counters(stack, "hive-b")
        fuzzer = FrameFuzzer(url, FrameGenerator(1, "worker", ["fuzz-hw-0", "fuzz-hw-1"]), _BlindHive(),
                             {"free_slots": 1, "state": "ready"}, curve=stack.client_keys(), server="hive")
        try:
            summary = fuzzer.run(3000)
        finally:
            fuzzer.close()
        counted = delta(before, counters(stack, "hive-b"))
    assert counted != summary["expected_reasons"]
    assert counted["not_registered"] > 0 and "not_registered" not in summary["expected_reasons"]
    assert {k: v for k, v in counted.items() if k != "not_registered"} == summary["expected_reasons"]
