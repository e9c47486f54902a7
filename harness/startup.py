"""Start a created compose stack in its `depends_on` order, each level gated on its services' health.

Compose v1 and v2 both honour `depends_on: condition: service_healthy`, but only by polling Docker's
health flag, which trails the service by up to a whole check interval plus an exec (v1 also creates
each level's containers only once the level before is healthy). Here every container is created up
front (`compose up --no-start`), each level is started in parallel, and the next level starts the
moment the services of this one answer `GET /health` themselves. Same order, same gate, no idle gaps.
"""
from __future__ import annotations

import time
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import requests
import yaml

from harness.errors import EnvironmentSetupError, NemesisError
from harness.stack.health import answers_health

PROBE_INTERVAL_S = 0.02


def dependency_levels(compose_file: Path) -> list[list[str]]:
    """Services grouped so that every service comes after all it depends on; ValueError on a cycle."""
    services = yaml.safe_load(Path(compose_file).read_text())["services"]
    deps = {name: set(_depends_on(spec)) for name, spec in services.items()}
    unknown = {d for ds in deps.values() for d in ds} - set(deps)
    if unknown:
        raise ValueError(f"{compose_file}: depends_on names unknown services {sorted(unknown)}")
    levels, placed = [], set()
    while len(placed) < len(deps):
        level = sorted(n for n, ds in deps.items() if n not in placed and ds <= placed)
        if not level:
            raise ValueError(f"{compose_file}: depends_on has a cycle among {sorted(set(deps) - placed)}")
        levels.append(level)
        placed.update(level)
    return levels


def _depends_on(spec: dict) -> list[str]:
    dep = spec.get("depends_on") or []
    return list(dep) if isinstance(dep, (list, dict)) else []


def start_in_order(levels: list[list[str]], start: Callable[[str], None], healthy: Callable[[str], bool],
                   timeout_s: float, describe: Callable[[list[str]], str] = lambda s: "") -> list[dict]:
    """Start each level in parallel, then wait until all its services are healthy; returns per-level timings.

    EnvironmentSetupError names the services that did not become healthy (with `describe(services)`).
    """
    deadline = time.monotonic() + timeout_s
    timings = []
    with futures.ThreadPoolExecutor(max(len(level) for level in levels)) as pool:
        for level in levels:
            t0 = time.monotonic()
            for f in [pool.submit(start, s) for s in level]:
                f.result()
            t1 = time.monotonic()
            waiting = set(level)
            while waiting:
                waiting = {s for s in waiting if not _probe(healthy, s)}
                if not waiting:
                    break
                if time.monotonic() > deadline:
                    bad = sorted(waiting)
                    raise EnvironmentSetupError("unhealthy service", f"not healthy within {timeout_s:.0f}s of the "
                                                f"start: {', '.join(bad)}\n{describe(bad)}")
                time.sleep(PROBE_INTERVAL_S)
            timings.append({"services": level, "start_s": round(t1 - t0, 3), "healthy_s": round(time.monotonic() - t1, 3)})
    return timings


def _probe(healthy: Callable[[str], bool], service: str) -> bool:
    try:
        return healthy(service)
    except (requests.RequestException, OSError, NemesisError):   # not listening yet / no address yet
        return False


def http_healthy(url_of: Callable[[str], str], path_of: Callable[[str], str] = lambda _s: "/health") -> Callable[[str], bool]:
    """A probe: GET <url_of(service)><path_of(service)> answers 200."""
    def probe(service: str) -> bool:
        return answers_health(url_of(service), path=path_of(service))
    return probe


def start_container(cluster: Any) -> Callable[[str], None]:
    """A starter: the Docker SDK start of the service's created container."""
    def start(service: str) -> None:
        cluster.container(service).start()
    return start
