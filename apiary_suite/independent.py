"""The independent soak checker: lost, duplicate and unanswerable jobs judged from client ops and worker ledgers.

Its evidence is not the orchestrator's bookkeeping: the client's own ops (each request carries a
client-made nonce and the checker knows the exact text it must get back), the mock workers' execution
ledgers (GET /ledger: which nonce each worker started and ran to completion) and, only to ask whether a
job id the client saw can be answered after the run, `GET /v1/jobs/{id}` lookups.  The promises it
holds the system to are those written in docs/protocol.md, "Delivery promises" (DEFAULT_PROMISES).
The verdict is Jepsen's: True, False, or "unknown" when evidence is missing; False wins.
"""
from __future__ import annotations

import json
from typing import Any, Callable

TERMINAL = frozenset({"completed", "failed", "cancelled"})
KINDS = ("lost", "duplicate-delivery", "wrong-text", "duplicate-execution", "unanswerable")
RESTART_WORDS = ("kill", "restart", "oom", "crash", "corrupt")  # fault kinds that replace a process (storage-corrupt stops and starts it)

# docs/protocol.md, "Delivery promises": what the stack promises today.
DEFAULT_PROMISES: dict[str, Any] = {
    "attempt_finishes_at_most_once": True,   # one (job id, attempt) runs to completion at most once
    "job_finishes_at_most_once": False,      # a job whose worker was declared lost may complete on a later attempt
    "idempotent_reexecution": "after_orchestrator_restart",  # or "never": an Idempotency-Key survives restarts
    "orchestrator_restarts": None,           # epoch seconds; None: found in the history's fault ops
    "restart_target": "orchestrator",        # the service whose kill/restart faults forget idempotency keys
    "answerable": "unless_killed_unflushed",  # or "always": every job id seen is found after any crash
    "registry_flush_window_s": 1.0,          # how long a row may wait unwritten (write-behind) before a kill
    "corruption_loses_earlier_jobs": True,   # a corrupt registry is moved aside and rebuilt empty
}
# The stronger promise (every nonce finishes at most once), for a protocol that makes it.
STRICT_PROMISES: dict[str, Any] = {**DEFAULT_PROMISES, "job_finishes_at_most_once": True,
                                   "idempotent_reexecution": "never", "answerable": "always",
                                   "corruption_loses_earlier_jobs": False}


def corruption_walls(ops: list[dict]) -> list[float]:
    """The start (wall) of every applied registry-corruption fault (nemesis `start` of storage-corrupt)."""
    return sorted(float(op["wall"]) for op in ops if op.get("type") == "invoke" and op.get("f") == "start"
                  and isinstance(op.get("value"), dict) and op["value"].get("kind") == "storage-corrupt"
                  and isinstance(op.get("wall"), (int, float)))


class Try:
    """One client try of a nonce: its invoke op and its completion (None when it never completed)."""

    __slots__ = ("invoke", "done", "value", "result")

    def __init__(self, invoke: dict, done: dict | None):
        self.invoke, self.done = invoke, done
        self.value = invoke.get("value") or {}
        self.result = (done or {}).get("value") or {}

    @property
    def indices(self) -> list[int]:
        return [op["index"] for op in (self.invoke, self.done) if op is not None and "index" in op]

    @property
    def job_id(self) -> str | None:
        if self.done is None:
            return None
        return self.done.get("job_id") or (self.result.get("job_id") if isinstance(self.result, dict) else None)

    @property
    def accepted(self) -> bool:
        """The client saw the request accepted: response headers arrived, or a job id."""
        return bool(self.job_id) or (isinstance(self.result, dict) and self.result.get("headers_received") is True)

    @property
    def definite(self) -> bool:
        """The try ended in a definite outcome: ok, or a fail with an explicit error body."""
        if self.done is None:
            return False
        if self.done.get("type") == "ok":
            return True
        return self.done.get("type") == "fail" and isinstance(self.result, dict) and bool(self.result.get("error"))


def client_tries(ops: list[dict]) -> dict[str, list[Try]]:
    """Group the history's completion requests by nonce (invoke f == "complete" with a nonce), in order."""
    done = {op["invoke_index"]: op for op in ops if op.get("type") != "invoke" and "invoke_index" in op}
    by_nonce: dict[str, list[Try]] = {}
    for op in ops:
        value = op.get("value")
        if op.get("type") == "invoke" and op.get("f") == "complete" and isinstance(value, dict) and value.get("nonce"):
            by_nonce.setdefault(str(value["nonce"]), []).append(Try(op, done.get(op.get("index"))))
    return by_nonce


def restart_walls(ops: list[dict], target: str = "orchestrator") -> list[tuple[float, float]]:
    """Return [start, end] (wall) of every fault op that kills or restarts `target`: the process died
    somewhere inside it, as a Jepsen nemesis op takes effect between its invoke and its completion (a kill
    of the orchestrator takes ~0.5 s from invoke to done); end is the completion's wall, +inf without one.

    A fault op is an invoke whose value names the kind (`{"kind": "kill", "target": ...}`, as the nemesis
    player records `start`), or whose f is the kind itself (`f: "kill"`); its heal (`stop`) is not a restart.
    """
    done = {op["invoke_index"]: float(op["wall"]) for op in ops if op.get("type") != "invoke"
            and "invoke_index" in op and isinstance(op.get("wall"), (int, float))}
    walls = []
    for op in ops:
        if op.get("type") != "invoke" or op.get("f") in ("complete", "stop", "heal") \
                or not isinstance(op.get("wall"), (int, float)):
            continue
        value = op.get("value")
        named = isinstance(value, dict) and "kind" in value
        kind = str(value["kind"] if named else op.get("f", "")).lower()
        aim = value.get("target") if named else value
        if any(word in kind for word in RESTART_WORDS) and target in json.dumps(aim, default=str):
            walls.append((float(op["wall"]), done.get(op.get("index"), float("inf"))))
    return sorted(walls)


def as_intervals(restarts: list) -> list[tuple[float, float]]:
    """Restarts as [start, end] intervals (a bare epoch second, as a policy may give, is an instant)."""
    return sorted((float(r), float(r)) if isinstance(r, (int, float)) else (float(r[0]), float(r[1])) for r in restarts)


def overlaps(restarts: list[tuple[float, float]], lo: float, hi: float) -> tuple[float, float] | None:
    """The first restart that may have happened inside [lo, hi], or None."""
    return next((r for r in restarts if r[0] <= hi and r[1] >= lo), None)


def read_ledgers(ledgers: dict[str, Any]) -> tuple[list[dict], list[str], list[str], list[str]]:
    """Return (deduplicated entries, workers read, workers unread, workers with failed writes).

    A ledger is a list of entries or a GET /ledger document ({"entries", "write_errors"}); None = unread.
    """
    entries, seen, read, unread, incomplete = [], set(), [], [], []
    for worker, ledger in sorted(ledgers.items()):
        if isinstance(ledger, dict):
            if (ledger.get("write_errors") or 0) > 0:
                incomplete.append(worker)
            ledger = ledger.get("entries")
        if not isinstance(ledger, list):
            unread.append(worker)
            continue
        read.append(worker)
        for entry in ledger:
            if not isinstance(entry, dict):
                continue
            key = json.dumps(entry, sort_keys=True, default=str)
            if key not in seen:  # the same line read twice (overlapping ?since= pages)
                seen.add(key)
                entries.append(entry)
    entries.sort(key=lambda e: (e.get("wall") or 0.0))
    return entries, read, unread, incomplete


def anomaly(kind: str, nonce: str | None, job_ids, tries: list[Try], ledger: list[dict], detail: str) -> dict:
    """Build one anomaly record with the ops and ledger entries that prove it."""
    return {"kind": kind, "nonce": nonce, "job_ids": sorted({j for j in job_ids if j}),
            "ops": sorted({i for t in tries for i in t.indices}), "ledger": list(ledger), "detail": detail}


def is_repetition(text: str, expected: str) -> bool:
    """True when `text` is `expected` with extra tokens inserted (a token delivered twice)."""
    if len(text) <= len(expected):
        return False
    want = iter(expected.split(" "))
    need = next(want, None)
    for token in text.split(" "):
        if need is not None and token == need:
            need = next(want, None)
    return need is None


def check_delivery(by_nonce: dict[str, list[Try]], expected_text: Callable[[str, int, int], str]) -> list[dict]:
    """wrong-text and duplicate-delivery from the client's ok completions."""
    found = []
    for nonce, tries in by_nonce.items():
        oks = [t for t in tries if t.done is not None and t.done.get("type") == "ok"]
        ids = {t.job_id for t in oks if t.job_id}
        if len(ids) > 1:
            found.append(anomaly("duplicate-delivery", nonce, ids, oks, [],
                                 f"delivered ok {len(oks)} times under {len(ids)} different job ids"))
        for t in oks:
            want = expected_text(t.value.get("prompt", ""), t.value.get("seed", 0), t.value.get("max_tokens", 16))
            got = t.result.get("text") if isinstance(t.result, dict) else None
            if got == want:
                continue
            if isinstance(got, str) and is_repetition(got, want):
                found.append(anomaly("duplicate-delivery", nonce, [t.job_id], [t], [],
                                     f"text repeats tokens: {len(got)} chars where {len(want)} were expected"))
            else:
                found.append(anomaly("wrong-text", nonce, [t.job_id], [t], [],
                                     f"text {str(got)[:80]!r} is not the expected {want[:80]!r}"))
    return found


def unflushed_at_kill(tries: list[Try], promises: dict, restarts: list[tuple[float, float]]) -> tuple | None:
    """The restart that may have dropped a job's unwritten registry row (documented promise), or None."""
    if promises.get("answerable") != "unless_killed_unflushed":
        return None
    began = min((t.invoke.get("wall") or 0.0) for t in tries)
    ended = max(((t.done or t.invoke).get("wall") or 0.0) for t in tries)
    window = float(promises.get("registry_flush_window_s") or 0.0)
    return overlaps(restarts, began, ended + window)


def check_answers(by_nonce: dict[str, list[Try]], lookups: dict[str, dict], missing: list[str],
                  counts: dict, promises: dict, restarts: list[tuple[float, float]], corruptions: list[float] = ()) -> list[dict]:
    """lost and unanswerable from the client's tries and the post-run job lookups."""
    found, unlooked = [], []
    for nonce, tries in by_nonce.items():
        ids = list(dict.fromkeys(t.job_id for t in tries if t.job_id))
        for job_id in ids:
            if job_id not in lookups:
                unlooked.append(job_id)
                continue
            view = lookups[job_id]
            state = view.get("state") if isinstance(view, dict) else None
            seen_by = [t for t in tries if t.job_id == job_id]
            if not isinstance(state, str):
                status = view.get("status") if isinstance(view, dict) else None
                began = min((t.invoke.get("wall") or 0.0) for t in seen_by)
                if status == 404 and promises.get("corruption_loses_earlier_jobs") and any(c >= began for c in corruptions):
                    counts["unanswerable_after_corruption"] += 1  # the registry it was in was moved aside
                    continue   # (checked first: a corruption also restarts the orchestrator)
                if status == 404 and unflushed_at_kill(seen_by, promises, restarts) is not None:
                    counts["unanswerable_excused"] += 1  # its row may still have been queued when killed
                    continue
                found.append(anomaly("unanswerable", nonce, [job_id], seen_by, [],
                                     f"GET /v1/jobs/{job_id} after the run gave {status or view!r}, not a job"))
            elif state != "completed" and any((t.done or {}).get("type") == "ok" for t in seen_by):
                counts["lookup_disagrees"] += 1  # the client got the text; the registry says otherwise
        if not any(t.accepted for t in tries) or any(t.definite for t in tries):
            continue
        if any(j not in lookups for j in ids):
            continue  # not looked up: counted as missing evidence, judged unknown
        states = {j: (lookups[j] or {}).get("state") if isinstance(lookups[j], dict) else None for j in ids}
        if not any(s in TERMINAL for s in states.values()):
            accepted = [t for t in tries if t.accepted]
            found.append(anomaly("lost", nonce, ids, tries, [],
                                 f"accepted on {len(accepted)} of {len(tries)} tries, no definite outcome, and the "
                                 f"lookups show no terminal state ({states or 'no job id was received'})"))
    if unlooked:
        missing.append(f"no lookup for {len(unlooked)} job ids the client saw: {sorted(set(unlooked))[:10]}")
    return found


def check_execution(by_nonce: dict[str, list[Try]], entries: list[dict], promises: dict,
                    restarts: list[tuple[float, float]]) -> list[dict]:
    """duplicate-execution from the ledgers' finish entries, against the promises."""
    found = []
    finishes = [e for e in entries if e.get("event") == "finish"]
    by_attempt: dict[tuple, list[dict]] = {}
    by_job: dict[str, list[dict]] = {}
    by_nonce_job: dict[str, dict[str, list[dict]]] = {}
    first_start: dict[str, float] = {}
    for e in entries:
        if e.get("event") == "start" and e.get("job_id") not in first_start:
            first_start[e.get("job_id")] = e.get("wall") or 0.0
    for e in finishes:
        by_attempt.setdefault((e.get("job_id"), e.get("attempt")), []).append(e)
        by_job.setdefault(e.get("job_id"), []).append(e)
        if e.get("nonce"):
            by_nonce_job.setdefault(e["nonce"], {}).setdefault(e.get("job_id"), []).append(e)
    nonce_of_job = {e.get("job_id"): e.get("nonce") for e in finishes}
    if promises.get("attempt_finishes_at_most_once", True):
        for (job_id, attempt), hits in by_attempt.items():
            if len(hits) > 1:
                nonce = nonce_of_job.get(job_id)
                found.append(anomaly("duplicate-execution", nonce, [job_id], by_nonce.get(nonce, []), hits,
                                     f"attempt {attempt} of {job_id} ran to completion {len(hits)} times on "
                                     f"{sorted({h.get('worker') for h in hits})}"))
    if promises.get("job_finishes_at_most_once"):
        for job_id, hits in by_job.items():
            if len({h.get("attempt") for h in hits}) > 1:
                nonce = nonce_of_job.get(job_id)
                found.append(anomaly("duplicate-execution", nonce, [job_id], by_nonce.get(nonce, []), hits,
                                     f"{job_id} ran to completion on attempts {sorted({h.get('attempt') for h in hits})}"))
    for nonce, tries in by_nonce.items():
        jobs = by_nonce_job.get(nonce, {})
        if len(jobs) < 2:
            continue
        keys = {t.value.get("idempotency_key") for t in tries}
        hits = [e for js in jobs.values() for e in js]
        if len(jobs) > len(tries):
            found.append(anomaly("duplicate-execution", nonce, jobs, tries, hits,
                                 f"{len(tries)} client tries ran to completion under {len(jobs)} job ids"))
        elif len(keys) == 1 and None not in keys:
            found.extend(_reexecutions(nonce, tries, jobs, first_start, promises, restarts))
    return found


def _reexecutions(nonce: str, tries: list[Try], jobs: dict[str, list[dict]], first_start: dict, promises: dict,
                  restarts: list[tuple[float, float]]) -> list[dict]:
    """Retries under one Idempotency-Key that completed again as a new job, unless a restart forgot the key."""
    order = sorted(jobs, key=lambda j: min(e.get("wall") or 0.0 for e in jobs[j]))
    since = min(t.invoke.get("wall") or 0.0 for t in tries)
    found = []
    for job_id in order[1:]:
        began = first_start.get(job_id, min(e.get("wall") or 0.0 for e in jobs[job_id]))
        forgiven = promises.get("idempotent_reexecution") == "after_orchestrator_restart" and \
            overlaps(restarts, since, began) is not None
        if not forgiven:
            hits = [e for j in (order[0], job_id) for e in jobs[j]]
            found.append(anomaly("duplicate-execution", nonce, [order[0], job_id], tries, hits,
                                 f"a retry with Idempotency-Key {tries[0].value.get('idempotency_key')!r} ran "
                                 f"again as {job_id} after {order[0]} had completed (no orchestrator restart between)"))
    return found


def workers_named(lookups: dict[str, dict] | None, ops: list[dict]) -> set[str]:
    """Workers the lookups (worker_id, history) or the client's completions say ran jobs."""
    names = set()
    for view in (lookups or {}).values():
        if not isinstance(view, dict):
            continue
        if isinstance(view.get("worker_id"), str):
            names.add(view["worker_id"])
        for step in view.get("history") or ():
            if isinstance(step, dict) and isinstance(step.get("worker_id"), str):
                names.add(step["worker_id"])
    for op in ops:
        if op.get("f") == "complete" and isinstance(op.get("worker_id"), str):
            names.add(op["worker_id"])
    return names


def check_soak(ops: list[dict], ledgers: dict[str, list[dict]] | None, lookups: dict[str, dict] | None,
               expected_text: Callable[[str, int, int], str], promises: dict | None = None) -> dict:
    """Judge a soak run: {"valid": True | False | "unknown", "anomalies", "counts", "evidence"}."""
    promises = {**DEFAULT_PROMISES, **(promises or {})}
    by_nonce = client_tries(ops)
    tries = [t for ts in by_nonce.values() for t in ts]
    counts: dict[str, Any] = {"nonces": len(by_nonce), "tries": len(tries), "lookup_disagrees": 0,
                              "unanswerable_excused": 0, "unanswerable_after_corruption": 0,
                              **{k: sum(1 for t in tries if (t.done or {}).get("type") == k)
                                 for k in ("ok", "fail", "info")},
                              "open": sum(1 for t in tries if t.done is None),
                              "accepted": sum(1 for t in tries if t.accepted)}
    missing: list[str] = []
    restarts = promises["orchestrator_restarts"]
    if restarts is None:
        restarts = restart_walls(ops, promises.get("restart_target", "orchestrator"))
    restarts = as_intervals(restarts)
    anomalies = check_delivery(by_nonce, expected_text)
    if lookups is None:
        missing.append("job lookups (GET /v1/jobs/{id}) were not made")
    else:
        anomalies += check_answers(by_nonce, lookups, missing, counts, promises, restarts, corruption_walls(ops))
    evidence: dict[str, Any] = {"ledgers": [], "missing_ledgers": [], "incomplete_ledgers": [],
                                "lookups": len(lookups or {}), "missing": missing, "orchestrator_restarts": restarts}
    if ledgers is None:
        missing.append("worker ledgers were not collected")
    else:
        entries, read, unread, incomplete = read_ledgers(ledgers)
        unread += sorted(workers_named(lookups, ops) - set(read) - set(unread))
        evidence.update(ledgers=read, missing_ledgers=unread, incomplete_ledgers=incomplete)
        if unread:
            missing.append(f"ledgers of workers that ran jobs could not be read: {unread}")
        if incomplete:
            missing.append(f"ledgers with failed writes (entries may be missing): {incomplete}")
        anomalies += check_execution(by_nonce, entries, promises, restarts)
        for event, name in (("start", "starts"), ("finish", "finishes"), ("abort", "aborts")):
            counts[name] = sum(1 for e in entries if e.get("event") == event)
    for kind in KINDS:
        counts[kind] = sum(1 for a in anomalies if a["kind"] == kind)
    valid: bool | str = False if anomalies else ("unknown" if missing else True)
    return {"valid": valid, "anomalies": anomalies, "counts": counts, "evidence": evidence, "promises": promises}


def compose(results: dict[str, Any]) -> dict:
    """Combine checker results Jepsen-style: any False -> False; else any "unknown" -> "unknown"; else True.

    A value may be a result dict, a zero-argument callable returning one (run here), or an exception;
    an exception, raised or given, and a result without a valid verdict count as "unknown".
    """
    out: dict[str, dict] = {}
    for name, result in results.items():
        try:
            if callable(result):
                result = result()
            if isinstance(result, Exception):
                raise result
            if not isinstance(result, dict) or result.get("valid") not in (True, False, "unknown"):
                result = {"valid": "unknown", "error": f"checker returned no verdict: {str(result)[:200]}"}
        except Exception as exc:  # a checker that crashed proves nothing either way
            result = {"valid": "unknown", "error": f"{type(exc).__name__}: {exc}"}
        out[name] = result
    verdicts = [r["valid"] for r in out.values()]
    valid: bool | str = False if False in verdicts else ("unknown" if "unknown" in verdicts else True)
    return {"valid": valid, "results": out,
            "failures": [n for n, r in out.items() if r["valid"] is False],
            "unknown": [n for n, r in out.items() if r["valid"] == "unknown"]}
