"""Model table: what workers serve, what hives cache, and provisioning progress per hive."""
from __future__ import annotations

import time

from services.protocol import PROVISION, dumps

IN_PROGRESS = frozenset({"requested", "downloading", "verifying", "retry"})
PROGRESS_TOPIC = {"downloading": "model.progress", "verifying": "model.progress", "retry": "model.retry",
                  "ready": "model.ready", "failed": "model.failed"}


class ModelTable:
    """Provisioning entries {model: {"hives": {hive_id: progress}}} plus views derived from live workers."""

    def __init__(self, cluster, events, registry):
        self.cluster = cluster
        self.events = events
        self.registry = registry
        self.entries: dict[str, dict] = {}

    def load(self, rows: list[dict]) -> None:
        for row in rows:
            detail = row["detail"] if isinstance(row["detail"], dict) else {}
            self.entries[row["name"]] = {"hives": detail.get("hives", {}),
                                         "created": detail.get("created", time.time()),
                                         "size_bytes": detail.get("size_bytes")}

    def known(self, model: str) -> bool:
        entry = self.entries.get(model)
        return entry is not None and self.state(model) != "failed"

    def _persist(self, model: str) -> None:
        entry = self.entries[model]
        self.registry.put("models", model, (model, self.state(model), dumps(entry).decode(), time.time()))

    def provision(self, model: str, size_bytes: int | None, hive_ids: list[str]) -> list[str]:
        """Send PROVISION to the given live hives and record them as requested."""
        entry = self.entries.setdefault(model, {"hives": {}, "created": time.time(), "size_bytes": size_bytes})
        if size_bytes is not None:
            entry["size_bytes"] = size_bytes
        body = {"model": model}
        if size_bytes is not None:
            body["size_bytes"] = size_bytes
        sent = []
        for hive_id in hive_ids:
            if self.cluster.send_to_hive(hive_id, PROVISION, body):
                sent.append(hive_id)
                entry["hives"][hive_id] = {"state": "requested", "bytes": 0, "total": size_bytes, "attempt": 0,
                                           "ts": time.time()}
        self._persist(model)
        self.events.publish("model.provisioning", model=model, hives=sent, size_bytes=size_bytes)
        return sent

    def progress(self, hive_id: str, body: dict) -> None:
        """Record a hive's PROGRESS report and publish the matching model.* event."""
        model, state = body["model"], body["state"]
        entry = self.entries.setdefault(model, {"hives": {}, "created": time.time(), "size_bytes": body.get("total")})
        info = {"state": state, "ts": time.time()}
        for key in ("bytes", "total", "attempt", "message"):
            if key in body:
                info[key] = body[key]
        entry["hives"][hive_id] = info
        hive = self.cluster.hives.get(hive_id)
        if state == "ready" and hive is not None and model not in hive.models:
            hive.models.append(model)
        topic = PROGRESS_TOPIC.get(state, "model.progress")
        self.events.publish(topic, model=model, hive_id=hive_id, state=state,
                            **{k: v for k, v in info.items() if k not in ("state", "ts")})
        if state in ("ready", "failed", "retry") or body.get("bytes") == body.get("total"):
            self._persist(model)

    def worker_models_changed(self, worker) -> None:
        for model in worker.models:
            if model in self.entries:
                self._persist(model)

    def serving(self, model: str) -> list:
        return [w for w in self.cluster.workers.values() if w.state == "ready" and model in w.models]

    def state(self, model: str) -> str:
        """available (a ready worker serves it) | provisioning | failed | unavailable (its workers are gone)."""
        if model in self.cluster.by_model:
            return "available"
        entry = self.entries.get(model)
        if entry is None:
            return "unavailable"
        states = [h.get("state") for h in entry["hives"].values()]
        if states and all(s == "failed" for s in states):
            return "failed"
        return "provisioning"

    def listing(self) -> list[dict]:
        """The /v1/models data list."""
        names = set(self.entries)
        for worker in self.cluster.workers.values():
            if worker.state != "left":
                names.update(worker.models)
        for hive in self.cluster.hives.values():
            names.update(hive.models)
        data = []
        for name in sorted(names):
            entry = self.entries.get(name, {})
            workers = [w.id for w in self.serving(name)]
            hives = sorted({h.id for h in self.cluster.hives.values() if name in h.models and h.state == "ready"} |
                           {w.hive_id for w in self.serving(name)})
            data.append({"id": name, "object": "model", "created": int(entry.get("created", 0) or 0),
                         "owned_by": "apiary", "state": self.state(name), "workers": workers, "hives": hives,
                         "progress": entry.get("hives", {})})
        return data
