"""Failure bundle of one scenario: logs since it began, container state, network membership, compose
ps, the orchestrator's /v1/workers and /metrics, the world's artifacts and the failed step's traceback.
Every part is best effort: a part that cannot be gathered is named in gather-errors.txt."""
from __future__ import annotations

import json
import re
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import requests

BUNDLE_FILES = ("failure.txt", "inspect.json", "networks.json", "ps.txt", "workers.json", "metrics.txt")


def slug(text: str, limit: int = 80) -> str:
    """A file-system friendly name: letters, digits, dots, dashes."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:limit] or "unnamed"


def bundle_dir(run_dir: Path, feature: str, scenario: str) -> Path:
    """reports/<run-id>/failures/<feature>/<scenario>/ (a numeric suffix keeps repeated names apart)."""
    base = Path(run_dir) / "failures" / slug(feature) / slug(scenario)
    path, n = base, 2
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def failed_step_text(scenario: Any) -> str:
    """The failed step (keyword, name, location), its error message and traceback, and hook errors."""
    out = [f"Scenario: {scenario.name}  ({scenario.location})", f"Status: {scenario.status.name}", ""]
    for step in scenario.all_steps:
        if step.status.name in ("failed", "error", "undefined", "hook_error"):
            out += [f"Failed step: {step.keyword} {step.name}  ({step.location})",
                    f"Step status: {step.status.name}", "", "Error:", str(step.error_message or "")]
            if getattr(step, "exc_traceback", None) is not None:
                out += ["", "Traceback:", "".join(traceback.format_tb(step.exc_traceback))]
            break
    if getattr(scenario, "error_message", None):
        out += ["", "Scenario/hook error:", str(scenario.error_message)]
    return "\n".join(out) + "\n"


def network_membership(cluster: Any, states: dict[str, dict]) -> dict:
    """Per service: networks (IP, aliases); per network: which services are attached."""
    per_net: dict[str, list[str]] = {}
    for service, st in states.items():
        for net in (st.get("networks") or {}):
            per_net.setdefault(net, []).append(service)
    return {"services": {s: st.get("networks") for s, st in states.items()}, "networks": per_net,
            "expected": {s: [cluster.network_name(n) for n in nets] for s, nets in getattr_expected(cluster).items()}}


def getattr_expected(cluster: Any) -> dict[str, tuple]:
    if getattr(cluster, "backend", "") != "docker":
        return {}
    from apiary_suite.stackops import NETWORKS
    return NETWORKS


def write_bundle(path: Path, cluster: Any, since: float, failure_text: str = "",
                 artifacts: dict[str, str] | None = None, extra: dict[str, str] | None = None) -> Path:
    """Write the bundle into `path`; returns it. Never raises: failures land in gather-errors.txt."""
    path.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []

    def part(name: str, produce: Callable[[], Any]) -> None:
        try:
            data = produce()
            text = data if isinstance(data, str) else json.dumps(data, indent=1, default=str)
            (path / name).write_text(text)
        except Exception as exc:  # noqa: BLE001 - a bundle is best effort, part by part
            errors.append(f"{name}: {exc!r}")

    part("failure.txt", lambda: failure_text)
    states: dict[str, dict] = {}

    def inspect_all() -> dict:
        states.update({s: cluster.inspect(s) for s in cluster.services})
        return states
    part("inspect.json", inspect_all)
    part("networks.json", lambda: network_membership(cluster, states))
    part("ps.txt", cluster.ps)
    admin = {"Authorization": f"Bearer {cluster.api_keys.get('admin', 'key-admin')}"}
    part("workers.json", lambda: requests.get(cluster.api_url + "/v1/workers", headers=admin, timeout=3).json())
    part("metrics.txt", lambda: requests.get(cluster.api_url + "/metrics", timeout=3).text)
    (path / "logs").mkdir(exist_ok=True)
    for service in cluster.services:
        part(f"logs/{service}.log", lambda s=service: cluster.logs(s, since=since))
    for name, text in (artifacts or {}).items():
        part(slug(name, 120), lambda t=text: t)
    for name, text in (extra or {}).items():
        part(name, lambda t=text: t)
    part("bundle.json", lambda: {"since": since, "written_at": time.time(), "backend": getattr(cluster, "backend", "?"),
                                 "files": sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())})
    if errors:
        (path / "gather-errors.txt").write_text("\n".join(errors) + "\n")
    return path


def write_timeline(path: Path, histories: list[list[dict]], events: list[dict], title: str) -> str | None:
    """timeline.png for a failed chaos scenario: its client and fault histories on one clock (their wall
    times), with the events it saw as marks; returns the file name, or the error as text."""
    try:
        from harness.plot import timeline
        ops, offset = [], 0
        for h in histories:            # each history numbers its ops from 0: give them one numbering
            for op in h:
                op = dict(op, index=op["index"] + offset)
                if "invoke_index" in op:
                    op["invoke_index"] += offset
                ops.append(op)
            offset += max((op["index"] for op in h), default=-1) + 1
        if not ops:
            return None
        t0 = min(op["wall"] for op in ops if op.get("wall") is not None)
        merged = [dict(op, time=round((op.get("wall") or t0) - t0, 6)) for op in ops]
        marks = [{"time": e["_arrived"] - t0, "label": e.get("topic"), "topic": e.get("topic")}
                 for e in events if e.get("_arrived") and str(e.get("topic", "")).startswith(("worker.", "hive."))]
        timeline(merged, Path(path) / "timeline.png", title=title, events=marks)
        return "timeline.png"
    except Exception as exc:  # noqa: BLE001 - a bundle is best effort
        return f"timeline failed: {exc!r}"


def attach_to_allure(bundle: Path) -> int:
    """Attach every file of a failure bundle to the running scenario's Allure result (when the run has
    --allure: allure-behave's formatter is active); returns how many were attached (0 without Allure)."""
    try:
        import allure
        from allure_commons import plugin_manager
    except ImportError:
        return 0
    if not plugin_manager.list_name_plugin():
        return 0
    n = 0
    for path in sorted(p for p in Path(bundle).rglob("*") if p.is_file()):
        kind = allure.attachment_type.JSON if path.suffix == ".json" else \
            allure.attachment_type.PNG if path.suffix == ".png" else allure.attachment_type.TEXT
        allure.attach.file(str(path), name=str(path.relative_to(bundle)), attachment_type=kind)
        n += 1
    return n

