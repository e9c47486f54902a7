"""Pure checkers over a history (and optionally events): each returns {"valid": bool, ...details}."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Callable, Iterable

from harness.history import as_ops, completions, pairs
from harness.stats import percentile

COMPLETE = ("complete",)


def check_no_loss_no_duplicates(history) -> dict:
    """Every completion request got exactly one outcome, every accepted job ended definitely (ok or an
    explicit failure), and no job id answers two different requests (idempotent retries excepted)."""
    ps = [(i, c) for i, c in pairs(history) if i.get("f") in COMPLETE]
    never = [i["index"] for i, c in ps if c is None]
    indeterminate = [c["index"] for _, c in ps if c is not None and c["type"] == "info"
                     and not (c.get("value") or {}).get("aborted")]
    by_job: dict[str, set] = defaultdict(set)
    for i, c in ps:
        if c is not None and c.get("job_id"):
            key = (i.get("value") or {}).get("idempotency_key") or f"req-{i['index']}"
            by_job[c["job_id"]].add(key)
    dup = {j: sorted(k) for j, k in by_job.items() if len(k) > 1}
    counts = Counter(c["type"] if c else "missing" for _, c in ps)
    return {"valid": not never and not indeterminate and not dup, "requests": len(ps), "counts": dict(counts),
            "never_completed": never, "indeterminate": indeterminate, "duplicate_job_ids": dup}


def check_exactly_once(history, events: Iterable[dict] | None = None) -> dict:
    """Each ok job completed exactly once: unique job ids per request and (with events) exactly one
    job.completed event per ok job and none for failed ones; same Idempotency-Key => same job and text."""
    oks = completions(history, COMPLETE, "ok")
    ids = Counter(op.get("job_id") for op in oks)
    invokes = {op["index"]: op for op in as_ops(history) if op.get("type") == "invoke"}
    by_key: dict[str, set] = defaultdict(set)
    for op in oks:
        key = (invokes.get(op.get("invoke_index"), {}).get("value") or {}).get("idempotency_key")
        if key:
            by_key[key].add((op.get("job_id"), (op.get("value") or {}).get("text")))
    idem_bad = {k: sorted(map(str, v)) for k, v in by_key.items() if len(v) > 1}
    missing_id = [op["index"] for op in oks if not op.get("job_id")]
    dup_ok = {j: n for j, n in ids.items() if j and n > 1 and not _same_key(oks, invokes, j)}
    result = {"ok_jobs": len(oks), "missing_job_id": missing_id, "duplicate_ok": dup_ok,
              "idempotency_conflicts": idem_bad}
    valid = not missing_id and not dup_ok and not idem_bad
    if events is not None:
        done = Counter(e.get("job_id") for e in events if e.get("topic") == "job.completed")
        ok_ids = {op.get("job_id") for op in oks}
        not_once = {j: done.get(j, 0) for j in ok_ids if j and done.get(j, 0) != 1}
        failed_ids = {op.get("job_id") for op in completions(history, COMPLETE, "fail")} - ok_ids
        completed_but_failed = sorted(j for j in failed_ids if j and done.get(j))
        result.update(completed_events_not_once=not_once, completed_but_reported_failed=completed_but_failed)
        valid = valid and not not_once and not completed_but_failed
    result["valid"] = valid
    return result


def _same_key(oks: list[dict], invokes: dict, job_id: str) -> bool:
    keys = {(invokes.get(op.get("invoke_index"), {}).get("value") or {}).get("idempotency_key")
            for op in oks if op.get("job_id") == job_id}
    return len(keys) == 1 and None not in keys


def check_tenant_isolation(history) -> dict:
    """No job id is shared between tenants, every response carries its own request's prompt-derived
    output (see check_text_matches), and any cross-tenant GET /v1/jobs/{id} answered 404."""
    owner: dict[str, set] = defaultdict(set)
    for op in completions(history, COMPLETE):
        if op.get("job_id") and op.get("status") not in (401, 403):
            owner[op["job_id"]].add(op.get("tenant"))
    shared = {j: sorted(map(str, t)) for j, t in owner.items() if len(t) > 1}
    invokes = {op["index"]: op for op in as_ops(history) if op.get("type") == "invoke"}
    leaks = []
    for op in completions(history, "get_job"):
        path = (invokes.get(op.get("invoke_index"), {}).get("value") or {}).get("path", "")
        jid = path.rsplit("/", 1)[-1]
        owners = owner.get(jid, set())
        if owners and op.get("tenant") not in owners and op.get("tenant") != "admin" and op.get("status") != 404:
            leaks.append({"job_id": jid, "asked_by": op.get("tenant"), "owner": sorted(map(str, owners)),
                          "status": op.get("status")})
    return {"valid": not shared and not leaks, "shared_job_ids": shared, "cross_tenant_reads": leaks,
            "jobs": len(owner)}


def check_text_matches(history, generate_text: Callable[[str, int, int], str]) -> dict:
    """ok completions carry exactly generate_text(prompt, seed, max_tokens); failed or aborted streams
    carry a prefix of it (never a duplicated or foreign token)."""
    wrong, bad_prefix, checked = [], [], 0
    for op in completions(history, COMPLETE):
        v = op.get("value") or {}
        if "prompt" not in v:
            continue
        expected = generate_text(v["prompt"], int(v.get("seed") or 0), int(v.get("max_tokens") or 16))
        got = v.get("text") or ""
        if op["type"] == "ok":
            checked += 1
            if got != expected:
                wrong.append({"index": op["index"], "job_id": op.get("job_id"), "expected": expected, "got": got})
        elif got and not expected.startswith(got):
            bad_prefix.append({"index": op["index"], "job_id": op.get("job_id"), "expected": expected, "got": got})
    return {"valid": not wrong and not bad_prefix, "checked": checked, "mismatches": wrong[:20],
            "mismatch_count": len(wrong), "bad_partial_streams": bad_prefix[:20]}


def check_spread(history, workers: Iterable[str], min_each: int = 1, max_ratio: float | None = None) -> dict:
    """ok jobs ran on every listed worker (>= min_each each) and, with max_ratio, busiest/idlest <= max_ratio.
    Ops need a worker_id field (see annotate_workers)."""
    workers = list(workers)
    per = Counter(op.get("worker_id") for op in completions(history, COMPLETE, "ok"))
    counts = {w: per.get(w, 0) for w in workers}
    unknown = per.get(None, 0)
    starved = [w for w, n in counts.items() if n < min_each]
    ratio = (max(counts.values()) / max(1, min(counts.values()))) if counts else 0.0
    fair = max_ratio is None or ratio <= max_ratio
    return {"valid": not starved and fair and bool(counts), "per_worker": counts, "starved": starved,
            "ratio": round(ratio, 3), "max_ratio": max_ratio, "unattributed": unknown,
            "elsewhere": {w: n for w, n in per.items() if w not in counts and w is not None}}


def annotate_workers(history_ops: list[dict], events: Iterable[dict]) -> list[dict]:
    """Return copies of ops with worker_id taken from job.completed (else job.dispatched) events."""
    where: dict[str, str] = {}
    for e in events:
        if e.get("job_id") and e.get("worker_id") and e.get("topic") in ("job.dispatched", "job.completed"):
            if e["topic"] == "job.completed" or e["job_id"] not in where:
                where[e["job_id"]] = e["worker_id"]
    out = []
    for op in history_ops:
        op = dict(op)
        if op.get("job_id") in where and not op.get("worker_id"):
            op["worker_id"] = where[op["job_id"]]
        out.append(op)
    return out


def latency_percentiles(history, f: str | None = "complete", type_: str | None = "ok") -> dict:
    """p50/p90/p99/max of completion latencies (seconds) for ops of `f` and `type_`."""
    lat = [op["latency"] for op in completions(history, f, type_) if op.get("latency") is not None]
    return {"valid": True, "count": len(lat), "p50": percentile(lat, 50), "p90": percentile(lat, 90),
            "p99": percentile(lat, 99), "max": max(lat) if lat else None}


def check_all_ok(history, f: str = "complete") -> dict:
    """Every request of `f` ended ok; lists the others with status and error."""
    ops = completions(history, f)
    bad = [{"index": op["index"], "type": op["type"], "status": op.get("status"),
            "error": (op.get("value") or {}).get("error") or (op.get("value") or {}).get("exception")}
           for op in ops if op["type"] != "ok"]
    return {"valid": bool(ops) and not bad, "total": len(ops), "not_ok": bad[:20], "not_ok_count": len(bad)}
