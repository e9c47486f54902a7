"""The label sweep: remove, or list, whatever of a run is left (containers, networks, volumes)."""
from __future__ import annotations

from typing import Any

RUN_LABEL = "io.apiary.run"
RUN_LABELS = (RUN_LABEL, "io.apiary.run-id")      # the second: helper containers of the step library


def sweep(client: Any, run_id: str, project: str | None = None) -> list[str]:
    """Remove every container, network and volume labelled with the run (safety net); returns failures."""
    failures: list[str] = []
    filters = [{"label": f"{label}={run_id}"} for label in RUN_LABELS]
    if project:
        filters.append({"label": f"com.docker.compose.project={project}"})
    for flt in filters:
        for c in client.containers.list(all=True, filters=flt):
            try:
                c.remove(force=True, v=True)
            except Exception as exc:  # noqa: BLE001 - report, keep sweeping
                if "No such container" not in str(exc) and "already in progress" not in str(exc):
                    failures.append(f"container {c.name}: {exc}")
    for kind in ("networks", "volumes"):
        for flt in filters:
            for obj in getattr(client, kind).list(filters=flt):
                try:
                    obj.remove(force=True) if kind == "volumes" else obj.remove()
                except Exception as exc:  # noqa: BLE001
                    if "not found" not in str(exc).lower() and "no such" not in str(exc).lower():
                        failures.append(f"{kind[:-1]} {obj.name}: {exc}")
    return failures


def leftovers(client: Any, run_id: str) -> dict[str, list[str]]:
    """Names of containers, networks and volumes still carrying the run's label."""
    out: dict[str, list[str]] = {"containers": [], "networks": [], "volumes": []}
    for label in RUN_LABELS:
        flt = {"label": f"{label}={run_id}"}
        # sparse: names from the list call itself, so a container removed meanwhile is no 404 (inspect race)
        out["containers"] += [(c.attrs.get("Names") or [c.id])[0].lstrip("/")
                              for c in client.containers.list(all=True, filters=flt, sparse=True)]
        out["networks"] += [n.name for n in client.networks.list(filters=flt)]
        out["volumes"] += [v.name for v in client.volumes.list(filters=flt)]
    return out


def remove_image_refs(client: Any, refs: list[str] | tuple[str, ...]) -> None:
    """Remove these image refs (name:tag); layers that other tags share stay, refs already gone are skipped."""
    for ref in refs:
        try:
            client.images.remove(ref)
        except Exception:  # noqa: BLE001 - already gone
            pass
