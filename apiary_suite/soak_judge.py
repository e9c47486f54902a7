"""The judgement of one soak: the independent checker over the client history, the workers' ledgers and the
job look-ups, composed with the gate policy's soak limits (recovery time, availability during faults,
faults that did not prove they took effect); plus the soak's figures."""
from __future__ import annotations

from typing import Any

from apiary_suite.load import latency_summary


def fault_intervals(ops: list[dict]) -> list[dict]:
    """Each fault the player applied: kind, target, verified, and its [start, end] in history time."""
    starts = {}
    for op in ops:
        if op.get("process") != "nemesis":
            continue
        v = op.get("value") or {}
        if op.get("f") == "start" and op["type"] == "invoke":
            starts[v.get("index")] = {"kind": v.get("kind"), "target": v.get("target"), "start": op["time"],
                                      "end": None, "verified": None, "applied": None}
    by_invoke = {op["index"]: op for op in ops if op.get("type") == "invoke"}
    for op in ops:
        if op.get("process") != "nemesis" or op["type"] == "invoke":
            continue
        inv = by_invoke.get(op.get("invoke_index"), {})
        item = starts.get((inv.get("value") or {}).get("index"))
        if item is None:
            continue
        if op.get("f") == "start":
            item["applied"] = op["type"] == "ok"
            item["verified"] = bool((op.get("value") or {}).get("verified")) and op["type"] == "ok"
        elif op.get("f") == "stop":
            item["end"] = op["time"]
    last = max((op["time"] for op in ops), default=0.0)
    for item in starts.values():
        item["end"] = item["end"] if item["end"] is not None else last
    return [starts[k] for k in sorted(starts, key=lambda k: (starts[k]["start"], str(k)))]


def requests_by_nonce(ops: list[dict]) -> dict[str, dict]:
    """Logical requests of the load (recovery probes excluded): first invoke time, tries, ended ok."""
    invokes = {op["index"]: op for op in ops if op.get("type") == "invoke" and op.get("f") == "complete"}
    out: dict[str, dict] = {}
    for op in invokes.values():
        v = op.get("value") or {}
        if not v.get("nonce") or v.get("phase") == "recovery":
            continue
        r = out.setdefault(v["nonce"], {"first": op["time"], "tries": 0, "ok": False})
        r["first"] = min(r["first"], op["time"])
        r["tries"] += 1
    for op in ops:
        inv = invokes.get(op.get("invoke_index"))
        if inv is not None and op.get("f") == "complete" and op["type"] == "ok":
            nonce = (inv.get("value") or {}).get("nonce")
            if nonce in out:
                out[nonce]["ok"] = True
    return out


def availability(reqs: dict[str, dict], intervals: list[dict]) -> tuple[float | None, int]:
    """Share of logical requests begun while a fault was active that ended ok (after retries), and how many."""
    during = [r for r in reqs.values() if any(i["start"] <= r["first"] <= i["end"] for i in intervals)]
    return (round(sum(r["ok"] for r in during) / len(during), 4) if during else None), len(during)


def judge(ops: list[dict], played: list[dict], ledgers: dict, missing: dict, lookups: dict, limits: dict, *,
          recovery_s: float | None, unhealed: list[str], elapsed_s: float, load_stats: dict,
          overran: str | None = None) -> dict:
    """soak.json's content: the checker's verdict, each gate check with its figure, and passed."""
    from apiary_suite.independent import check_soak, compose
    from services.protocol import generate_text
    independent = _safe(lambda: check_soak(ops, ledgers, lookups, generate_text))
    verdict = compose({"independent": independent,
                       "evidence": {"valid": "unknown" if missing else True, "missing_ledgers": missing}})
    verdict["anomalies"] = independent.get("anomalies", [])
    intervals = fault_intervals(ops)
    reqs = requests_by_nonce(ops)
    avail, during = availability(reqs, intervals)
    applied = [i for i in intervals if i["applied"]]
    unverified = [i for i in intervals if not i["verified"]]
    tries = sum(r["tries"] for r in reqs.values())
    lat = latency_summary(op["latency"] for op in ops if op.get("f") == "complete" and op["type"] == "ok"
                          and op.get("latency") is not None)
    checks = {
        "checker": {"passed": verdict["valid"] is True or (verdict["valid"] == "unknown" and limits["allow_unknown"]),
                    "detail": f"verdict {verdict['valid']}: {len(verdict.get('anomalies', []))} anomalies"
                              + (f"; ledgers missing: {sorted(missing)}" if missing else "")},
        "recovery": {"passed": recovery_s is not None and recovery_s <= limits["max_recovery_s"],
                     "detail": f"recovered in {recovery_s}s (limit {limits['max_recovery_s']}s)"},
        "availability": {"passed": avail is None or avail >= limits["min_availability"],
                         "detail": f"{avail} of {during} requests begun during faults ended ok "
                                   f"(limit {limits['min_availability']})"},
        "faults-verified": {"passed": len(unverified) <= limits["max_unverified_faults"] and not unhealed,
                            "detail": f"{len(unverified)} of {len(intervals)} faults did not prove they took effect "
                                      f"(limit {limits['max_unverified_faults']}): "
                                      f"{[(i['kind'], i['target']) for i in unverified][:10]}"
                                      + (f"; could not undo: {unhealed}" if unhealed else "")},
        "finished": {"passed": overran is None,
                     "detail": overran or "the schedule and the load ended within the soak's watchdog limit"},
    }
    minutes = max(elapsed_s, 1e-9) / 60
    return {"passed": all(c["passed"] for c in checks.values()), "checks": checks, "verdict": verdict,
            "requests": len(reqs), "tries": tries, "rps": round(tries / max(elapsed_s, 1e-9), 1),
            "ok_requests": sum(r["ok"] for r in reqs.values()), "faults": len(played),
            "faults_applied": len(applied), "faults_unverified": len(unverified),
            "faults_per_min": round(len(applied) / minutes, 1), "availability_during_faults": avail,
            "requests_during_faults": during, "recovery_s": recovery_s, "healed_at_s": _last_nemesis_time(ops),
            "elapsed_s": round(elapsed_s, 2), "latency_ms": {k: (round(v * 1000, 2) if isinstance(v, float) else v)
                                                            for k, v in lat.items()},
            "load": load_stats, "intervals": intervals, "unhealed": unhealed}


def _last_nemesis_time(ops: list[dict]) -> float | None:
    times = [op["time"] for op in ops if op.get("process") == "nemesis"]
    return max(times) if times else None


def _safe(fn: Any) -> dict:
    """A checker that raises gives 'unknown' with the error, never a pass."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        return {"valid": "unknown", "error": repr(exc)}
