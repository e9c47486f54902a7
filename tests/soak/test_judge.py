"""The soak's judgement over crafted histories: fault intervals, availability during faults, gate checks."""
from harness.history import History
from services.protocol import generate_text
from apiary_suite.soak_judge import availability, fault_intervals, judge, requests_by_nonce

LIMITS = {"max_recovery_s": 30, "min_availability": 0.5, "allow_unknown": False, "max_unverified_faults": 0}


def fault(h, index, kind, target, verified=True, healed=True):
    op = h.invoke("nemesis", "start", {"kind": kind, "target": target, "params": {}, "index": index})
    h.complete(op, "ok", {"verified": verified, "evidence": {}})
    if healed:
        h.complete(h.invoke("nemesis", "stop", {"kind": kind, "target": target, "index": index}), "ok", {"unhealed": []})


def request(h, nonce, ok, tries=1):
    """A logical request as SoakLoad records it; the ok try carries the mock model's exact text."""
    prompt = f"p nonce:{nonce}"
    for t in range(tries):
        op = h.invoke("tenant-a-1", "complete", {"nonce": nonce, "try": t, "prompt": prompt, "seed": 1,
                                                  "max_tokens": 3, "stream": False, "tenant": "tenant-a",
                                                  "idempotency_key": nonce})
        good = ok and t == tries - 1
        h.complete(op, "ok" if good else "info", {"text": generate_text(prompt, 1, 3) if good else "",
                                                   "headers_received": good, "done": good, "error": None},
                   job_id=f"j-{nonce}", tenant="tenant-a", status=200 if good else None)


def test_intervals_pair_start_and_stop_by_index_and_carry_verification():
    h = History()
    fault(h, 0, "pause", "worker-a1")
    fault(h, 1, "kill", "hive-a", verified=False, healed=False)
    got = fault_intervals(h.ops)
    assert [(i["kind"], i["verified"], i["applied"]) for i in got] == [("pause", True, True), ("kill", False, True)]
    assert got[0]["start"] <= got[0]["end"] and got[1]["end"] >= got[1]["start"]


def test_availability_counts_requests_begun_during_a_fault_and_retries_that_ended_ok():
    h = History()
    request(h, "before", True)
    op = h.invoke("nemesis", "start", {"kind": "pause", "target": "w", "index": 0})
    h.complete(op, "ok", {"verified": True})
    request(h, "during-ok", True, tries=2)
    request(h, "during-lost", False, tries=3)
    h.complete(h.invoke("nemesis", "stop", {"kind": "pause", "target": "w", "index": 0}), "ok", {})
    request(h, "after", False)
    reqs = requests_by_nonce(h.ops)
    assert reqs["during-ok"] == {"first": reqs["during-ok"]["first"], "tries": 2, "ok": True}
    assert availability(reqs, fault_intervals(h.ops)) == (0.5, 2)


def test_judge_fails_the_soak_on_an_unverified_fault_and_a_missing_recovery():
    h = History()
    fault(h, 0, "partition", "hive-a|worker-a1", verified=False)
    request(h, "x", True)
    r = judge(h.ops, [{}], {"worker-a1": []}, {}, {"j-x": {"state": "completed"}}, LIMITS,
              recovery_s=None, unhealed=[], elapsed_s=10, load_stats={})
    assert not r["passed"]
    assert not r["checks"]["faults-verified"]["passed"] and not r["checks"]["recovery"]["passed"]
    assert r["faults_unverified"] == 1 and r["requests"] == 1


def test_a_missing_ledger_makes_the_verdict_unknown_and_the_gate_refuses_it():
    h = History()
    request(h, "x", True)
    r = judge(h.ops, [], {}, {"worker-a1": "connection refused"}, {"j-x": {"state": "completed"}}, LIMITS,
              recovery_s=1.0, unhealed=[], elapsed_s=10, load_stats={})
    assert r["verdict"]["valid"] == "unknown" and not r["checks"]["checker"]["passed"]
    allowed = judge(h.ops, [], {}, {"worker-a1": "refused"}, {"j-x": {"state": "completed"}},
                    {**LIMITS, "allow_unknown": True}, recovery_s=1.0, unhealed=[], elapsed_s=10, load_stats={})
    assert allowed["checks"]["checker"]["passed"]


def test_a_job_finished_twice_in_a_ledger_is_listed_as_an_anomaly_of_the_soak():
    h = History()
    request(h, "x", True)
    entry = {"worker": "worker-a1", "event": "finish", "job_id": "j-x", "attempt": 1, "nonce": "x", "tokens": 3}
    start = dict(entry, event="start")
    runs = [dict(e, wall=100.0 + i) for i, e in enumerate([start, entry, start, entry])]   # the same run twice
    r = judge(h.ops, [], {"worker-a1": runs}, {}, {"j-x": {"state": "completed"}}, LIMITS,
              recovery_s=1.0, unhealed=[], elapsed_s=10, load_stats={})
    assert r["verdict"]["valid"] is False and not r["passed"]
    assert [a["kind"] for a in r["verdict"]["anomalies"]] == ["duplicate-execution"]


def test_a_clean_soak_passes_every_check():
    h = History()
    fault(h, 0, "pause", "worker-a1")
    request(h, "x", True)
    entry = {"worker": "worker-a1", "event": "finish", "job_id": "j-x", "attempt": 1, "nonce": "x", "tokens": 3}
    r = judge(h.ops, [{}], {"worker-a1": [dict(entry, event="start"), entry]}, {}, {"j-x": {"state": "completed"}},
              LIMITS, recovery_s=1.0, unhealed=[], elapsed_s=10, load_stats={})
    assert r["passed"], r["checks"]
    overran = judge(h.ops, [{}], {"worker-a1": [dict(entry, event="start"), entry]}, {}, {"j-x": {"state": "completed"}},
                    LIMITS, recovery_s=1.0, unhealed=[], elapsed_s=10, load_stats={},
                    overran="soak seed 1: play did not finish within 300s (stacks in stacks-1.txt)")
    assert not overran["passed"] and not overran["checks"]["finished"]["passed"]
    assert "stacks-1.txt" in overran["checks"]["finished"]["detail"]
