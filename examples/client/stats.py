"""The end-of-run figures: throughput, latency percentiles, retries and errors, as a dict and as text."""
from __future__ import annotations

from collections import Counter

from harness.stats import percentile


def _ms(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {"p50": round(percentile(values, 50) * 1000, 3), "p95": round(percentile(values, 95) * 1000, 3),
            "p99": round(percentile(values, 99) * 1000, 3), "max": round(max(values) * 1000, 3),
            "mean": round(sum(values) / len(values) * 1000, 3)}


def summarize(outcomes: list, elapsed_s: float, settings: dict) -> dict:
    """Figures over the outcomes of one run (latency of the ok requests, retry waits included)."""
    ok = [o for o in outcomes if o.ok]
    retries, waited = Counter(), Counter()
    for o in outcomes:
        for reason, seconds in o.waits:
            retries[reason] += 1
            waited[reason] += seconds
    out = {"settings": settings, "requests": len(outcomes), "ok": len(ok), "failed": len(outcomes) - len(ok),
           "errors": dict(sorted(Counter(o.error for o in outcomes if not o.ok).items())),
           "retries": dict(sorted(retries.items())),
           "waited_s": {k: round(v, 3) for k, v in sorted(waited.items())},
           "elapsed_s": round(elapsed_s, 3),
           "throughput_rps": round(len(ok) / elapsed_s, 2) if elapsed_s > 0 else None,
           "tokens": sum(o.tokens for o in ok),
           "latency_ms": _ms([o.latency_s for o in ok])}
    if settings.get("stream"):
        out["ttft_ms"] = _ms([o.ttft_s for o in ok if o.ttft_s is not None])
    return out


def render(s: dict) -> str:
    """The summary as a few aligned lines of text."""
    def pcts(d: dict) -> str:
        return "  ".join(f"{k} {'-' if d[k] is None else f'{d[k]:.1f} ms'}" for k in ("p50", "p95", "p99", "max"))

    rate = s["settings"].get("rate") or 0
    lines = [f"requests    {s['requests']} (ok {s['ok']}, failed {s['failed']})",
             f"throughput  {s['throughput_rps']} req/s ({s['ok']} ok in {s['elapsed_s']:.2f} s, concurrency "
             f"{s['settings'].get('concurrency')}, rate {rate or 'unlimited'}{'/s' if rate else ''})",
             f"latency     {pcts(s['latency_ms'])}"]
    if "ttft_ms" in s:
        lines.append(f"first token {pcts(s['ttft_ms'])}")
    lines.append("retries     " + ("  ".join(f"{k}: {n} (waited {s['waited_s'][k]:.2f} s)"
                                             for k, n in s["retries"].items()) or "none"))
    lines.append("errors      " + (", ".join(f"{k}: {n}" for k, n in s["errors"].items()) or "none"))
    return "\n".join(lines)
