"""Checkers are pure functions over histories built by hand."""
from apiary_suite import checker
from harness.history import History
from services.protocol import generate_text


def _job(h, tenant, prompt, kind="ok", job_id=None, text=None, seed=0, n=4, key=None, worker=None):
    op = h.invoke(tenant, "complete", {"prompt": prompt, "seed": seed, "max_tokens": n, "idempotency_key": key},
                  tenant=tenant)
    value = {"prompt": prompt, "seed": seed, "max_tokens": n,
             "text": generate_text(prompt, seed, n) if text is None else text}
    extra = {"worker_id": worker} if worker else {}
    return h.complete(op, kind, value, job_id=job_id, tenant=tenant, status=200 if kind == "ok" else 502, **extra)


def test_no_loss_no_duplicates():
    h = History()
    _job(h, "a", "p1", job_id="j1")
    _job(h, "b", "p2", job_id="j2")
    assert checker.check_no_loss_no_duplicates(h)["valid"]
    _job(h, "a", "p3", job_id="j1")            # same job id for another request
    h.invoke("a", "complete", {"prompt": "p4"})  # never completed
    r = checker.check_no_loss_no_duplicates(h)
    assert not r["valid"] and "j1" in r["duplicate_job_ids"] and r["never_completed"]


def test_idempotent_retries_share_a_job():
    h = History()
    _job(h, "a", "p", job_id="j1", key="k")
    _job(h, "a", "p", job_id="j1", key="k")
    assert checker.check_no_loss_no_duplicates(h)["valid"]
    assert checker.check_exactly_once(h)["valid"]


def test_exactly_once_with_events():
    h = History()
    _job(h, "a", "p1", job_id="j1")
    _job(h, "a", "p2", job_id="j2", kind="fail")
    events = [{"topic": "job.completed", "job_id": "j1"}]
    assert checker.check_exactly_once(h, events)["valid"]
    r = checker.check_exactly_once(h, events + [{"topic": "job.completed", "job_id": "j1"},
                                                {"topic": "job.completed", "job_id": "j2"}])
    assert not r["valid"] and r["completed_events_not_once"] == {"j1": 2} and r["completed_but_reported_failed"] == ["j2"]


def test_tenant_isolation():
    h = History()
    _job(h, "tenant-a", "p1", job_id="j1")
    ok = h.invoke("tenant-b", "get_job", {"path": "/v1/jobs/j1"}, tenant="tenant-b")
    h.complete(ok, "fail", {"status": 404}, tenant="tenant-b", status=404)
    assert checker.check_tenant_isolation(h)["valid"]
    leak = h.invoke("tenant-b", "get_job", {"path": "/v1/jobs/j1"}, tenant="tenant-b")
    h.complete(leak, "ok", {"status": 200}, tenant="tenant-b", status=200)
    r = checker.check_tenant_isolation(h)
    assert not r["valid"] and r["cross_tenant_reads"][0]["asked_by"] == "tenant-b"
    _job(h, "tenant-b", "p2", job_id="j1")
    assert "j1" in checker.check_tenant_isolation(h)["shared_job_ids"]


def test_text_matches_and_partial_prefix():
    h = History()
    _job(h, "a", "p1", job_id="j1")
    _job(h, "a", "p2", job_id="j2", kind="fail", text=generate_text("p2", 0, 4)[:8])
    assert checker.check_text_matches(h, generate_text)["valid"]
    _job(h, "a", "p3", job_id="j3", text=" wrong words")
    full = generate_text("p4", 0, 4)
    _job(h, "a", "p4", job_id="j4", kind="fail", text=full[:6] + full[:6])  # duplicated token
    r = checker.check_text_matches(h, generate_text)
    assert not r["valid"] and r["mismatch_count"] == 1 and len(r["bad_partial_streams"]) == 1


def test_spread_and_fairness():
    h = History()
    for i in range(8):
        _job(h, "a", f"p{i}", job_id=f"j{i}", worker=["w1", "w2", "w3", "w4"][i % 4])
    assert checker.check_spread(h, ["w1", "w2", "w3", "w4"], max_ratio=1.0)["valid"]
    r = checker.check_spread(h, ["w1", "w2", "w3", "w4", "w5"])
    assert not r["valid"] and r["starved"] == ["w5"]


def test_annotate_workers_from_events():
    h = History()
    _job(h, "a", "p", job_id="j1")
    ops = checker.annotate_workers(h.ops, [{"topic": "job.dispatched", "job_id": "j1", "worker_id": "w1"},
                                           {"topic": "job.completed", "job_id": "j1", "worker_id": "w2"}])
    assert [op.get("worker_id") for op in ops if op["type"] == "ok"] == ["w2"]


def test_latency_percentiles():
    h = History()
    for i in range(10):
        _job(h, "a", f"p{i}", job_id=f"j{i}")
    r = checker.latency_percentiles(h)
    assert r["count"] == 10 and r["p50"] <= r["p99"] <= r["max"]
    assert checker.percentile([1, 2, 3, 4], 50) == 2 and checker.percentile([], 50) is None
