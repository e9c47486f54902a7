"""History: op shape, invoke/complete pairing, JSON-lines round trip."""
from harness.history import History, completions, pairs


def test_invoke_complete_pairs_and_latency():
    h = History()
    a = h.invoke("p0", "complete", {"prompt": "x"}, tenant="tenant-a")
    b = h.invoke("p1", "complete", {"prompt": "y"})
    done = h.complete(a, "ok", {"text": " the"}, job_id="j1", tenant="tenant-a")
    assert done["invoke_index"] == a["index"] and done["latency"] >= 0 and done["job_id"] == "j1"
    ps = pairs(h)
    assert [(i["index"], c and c["index"]) for i, c in ps] == [(0, 2), (1, None)]
    assert [op["index"] for op in completions(h, "complete", "ok")] == [2]
    assert b["type"] == "invoke"


def test_jsonl_round_trip_strips_internal_keys():
    h = History()
    h.complete(h.invoke("p", "f", 1), "fail", {"status": 400})
    text = h.to_jsonl()
    assert "_mono" not in text
    back = History.from_jsonl(text)
    assert back.ops == h.ops and len(back) == 2


def test_complete_rejects_bad_type():
    h = History()
    op = h.invoke("p", "f")
    try:
        h.complete(op, "invoke")
    except ValueError:
        return
    raise AssertionError("invoke is not a completion type")


def test_a_failed_chaos_scenario_timeline_merges_client_and_fault_histories_on_one_clock(tmp_path):
    from apiary_suite.gather import write_timeline
    client, faults = History(), History()
    c = client.invoke("tenant-a-1", "complete", {"prompt": "p"})
    f = faults.invoke("nemesis", "start", {"kind": "pause", "target": "worker-a1", "params": {}, "index": 0})
    faults.complete(f, "ok", {"verified": True})
    client.complete(c, "ok", {"text": "x"})
    faults.complete(faults.invoke("nemesis", "stop", {"kind": "pause", "target": "worker-a1", "index": 0}), "ok", {})
    assert write_timeline(tmp_path, [client.ops, faults.ops], [], "t") == "timeline.png"
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
