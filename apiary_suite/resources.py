"""Resource observations of the stack's containers: memory of a service's main process (VmRSS of PID 1
from /proc, read with exec) and of its cgroup (docker stats), and a container's exit state."""
from __future__ import annotations

import re
from typing import Any


def parse_vmrss_kib(status_text: str) -> int | None:
    """VmRSS in KiB from the text of /proc/<pid>/status (None when absent)."""
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", status_text, re.M)
    return int(m.group(1)) if m else None


def rss_mib(cluster: Any, service: str, pid: int = 1) -> float:
    """Resident memory of a service's process (PID 1 = the service) in MiB."""
    out = cluster.exec(service, ["cat", f"/proc/{pid}/status"]).output.decode("utf-8", "replace")
    kib = parse_vmrss_kib(out)
    if kib is None:
        raise AssertionError(f"no VmRSS in /proc/{pid}/status of {service}: {out[:300]!r}")
    return kib / 1024


def cgroup_mib(cluster: Any, service: str) -> float | None:
    """Memory usage of the container's cgroup (docker stats, without page cache when reported)."""
    stats = cluster.container(service).stats(stream=False)
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if usage is None:
        return None
    cache = (mem.get("stats") or {}).get("inactive_file", 0)
    return (usage - cache) / (1 << 20)


def memory_snapshot(cluster: Any, services: list[str]) -> dict[str, dict]:
    """service -> {rss_mib, cgroup_mib} now."""
    return {s: {"rss_mib": round(rss_mib(cluster, s), 2), "cgroup_mib": _round(cgroup_mib(cluster, s))}
            for s in services}


def growth(before: dict[str, dict], after: dict[str, dict], key: str = "rss_mib") -> dict[str, float]:
    """service -> after - before of one measure."""
    return {s: round(after[s][key] - before[s][key], 2) for s in before if s in after
            and before[s].get(key) is not None and after[s].get(key) is not None}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
