"""Report helpers of the end-to-end benchmark: targets, lost-job count and the printed table."""
from __future__ import annotations

TARGETS = {"peak_jobs_per_s": 1500, "p50_ms_at_200": 2.0, "p99_ms_at_200": 5.0, "detection_p99_s": 1.0,
           "redispatch_p99_s": 0.25}


def any_lost(report: dict) -> int:
    """Jobs lost anywhere in the report (the service logs are then kept for diagnosis)."""
    total = 0
    for part in (report.get("peak") or {}).values():
        for r in (part or {}).get("runs", []) if isinstance(part, dict) else []:
            total += r["lost"]
    total += sum(r["lost"] for r in (report.get("open_loop") or {}).values())
    total += (report.get("memory") or {}).get("lost", 0)
    total += sum(c["lost"] for c in (report.get("cpu_per_job") or {}).values())
    return total


def table(report: dict) -> str:
    rows = []

    def row(name, value, target="", ok=None):
        mark = "" if ok is None else ("ok" if ok else "MISSED")
        rows.append(f"| {name:<52} | {value:>22} | {target:>12} | {mark:>6} |")

    p = report.get("peak", {})
    if p:
        v = p["non_streamed"]["peak_jobs_per_s"]
        row("peak jobs/s, 1 token, non-streamed, 0 lost", f"{v} (conns {p['non_streamed']['at_connections']})",
            ">= 1500", v >= TARGETS["peak_jobs_per_s"])
        v = p["streamed"]["peak_jobs_per_s"]
        row("peak jobs/s, 1 token, streamed, 0 lost", f"{v} (conns {p['streamed']['at_connections']})", "", None)
        if p.get("wrk"):
            w = p["wrk"]
            row(f"  wrk cross-check, non-streamed (c={w['connections']})", f"{w['jobs_per_s']} (lost {w['lost']})")
    o = report.get("open_loop", {})
    if o:
        ns, st = o["non_streamed"], o["streamed"]
        row(f"latency p50 @ {ns['rate']:.0f}/s, non-streamed (ms)", ns["latency_ms"]["p50"], "<= 2",
            (ns["latency_ms"]["p50"] or 1e9) <= 2)
        row(f"latency p99 @ {ns['rate']:.0f}/s, non-streamed (ms)", ns["latency_ms"]["p99"], "<= 5",
            (ns["latency_ms"]["p99"] or 1e9) <= 5)
        row(f"TTFT p50 @ {st['rate']:.0f}/s, streamed (ms)", st["ttft_ms"]["p50"], "<= 2", (st["ttft_ms"]["p50"] or 1e9) <= 2)
        row(f"TTFT p99 @ {st['rate']:.0f}/s, streamed (ms)", st["ttft_ms"]["p99"], "<= 5", (st["ttft_ms"]["p99"] or 1e9) <= 5)
        row("lost at 200/s (non-streamed / streamed)", f"{ns['lost']} / {st['lost']}", "0", ns["lost"] + st["lost"] == 0)
    k = report.get("kills", {})
    if k:
        d, r = k["detection_s"], k["redispatch_s"]
        row(f"detection kill->worker.lost p50/p99 (s, n={d['n']})", f"{d['p50']} / {d['p99']}", "p99 <= 1",
            d["p99"] is not None and d["p99"] <= 1)
        row(f"re-dispatch worker.lost->job.dispatched p50/p99 (s, n={r['n']})", f"{r['p50']} / {r['p99']}", "<= 0.25",
            r["p99"] is not None and r["p99"] <= 0.25)
    c = report.get("cpu_per_job", {})
    if c:
        for kind, v in c.items():
            row(f"CPU us/job {kind}: total (ceiling jobs/s on 2 CPUs)",
                f"{v['total_cpu_us_per_job']:.0f} ({v['cpu_bound_ceiling_jobs_per_s']:.0f})")
            row("  of which " + ", ".join(f"{k} {u:.0f}" for k, u in list(v["per_kind_us"].items())[:3]), "")
    m = report.get("memory", {})
    if m:
        for name, g in m["services"].items():
            row(f"RSS {name} before -> after (MiB)", f"{g['before_mib']} -> {g['after_mib']}",
                "bounded" if name == "orchestrator" else "", None)
        row(f"memory rounds lost ({m['rounds']} x {m['jobs_per_round']})", m["lost"], "0", m["lost"] == 0)
    head = f"| {'measure':<52} | {'value':>22} | {'target':>12} | {'':>6} |"
    return "\n".join([head, "|" + "-" * 54 + "|" + "-" * 24 + "|" + "-" * 14 + "|" + "-" * 8 + "|", *rows])
