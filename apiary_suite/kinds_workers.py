"""Fault kind `extra-workers`: `count` more mock-worker containers join a hive's network at once
(apiary_suite/extra_workers.py), a registration storm. verify() holds when every extra container is running
and the orchestrator's GET /v1/workers (as the admin) lists each of their worker ids; heal() removes
them and returns what it could not remove."""
from __future__ import annotations

from typing import Any

import requests

from harness.errors import NemesisError
from apiary_suite.extra_workers import ExtraWorkers
from harness.nemesis.protocol import ActiveFault, FaultKind, check_number, is_docker, poll, register, role, services_of

WORKERS_PATH = "/v1/workers"
MAX_COUNT = 32
VERIFY_INTERVAL_S = 0.2      # gentler than the other kinds' polls: the containers are still starting


def get_workers(stack: Any, timeout_s: float = 2.0) -> dict:
    """GET /v1/workers on the orchestrator with the stack's admin key (raises on an HTTP error)."""
    key = (getattr(stack, "api_keys", None) or {}).get("admin")
    if not key:
        raise NemesisError("extra-workers: the stack has no admin API key to read /v1/workers with")
    resp = requests.get(stack.api_url.rstrip("/") + WORKERS_PATH, headers={"Authorization": f"Bearer {key}"},
                        timeout=timeout_s)
    resp.raise_for_status()
    return resp.json()


class ExtraWorkersJoined(ActiveFault):
    """verify: every extra worker's container runs and /v1/workers lists it; heal: remove them all."""

    def __init__(self, kind: str, target: str, params: dict, stack: Any, extras: ExtraWorkers, ids: list[str]):
        super().__init__(kind, target, params, stack)
        self.extras = extras
        self.worker_ids = list(ids)

    def check(self) -> tuple[bool, Any]:
        """Registration first (one GET); the containers' states only once every worker is listed, so the
        poll does not load the engine while the new containers start."""
        def once() -> tuple[bool, dict]:
            try:
                listed = {w.get("id"): w.get("state") for w in get_workers(self.stack).get("workers", [])}
                error = None
            except (requests.RequestException, ValueError, NemesisError) as exc:
                listed, error = {}, repr(exc)[:300]
            unregistered = [w for w in self.worker_ids if w not in listed]
            ev = {"workers": self.worker_ids, "unregistered": unregistered,
                  "registered_states": {w: listed[w] for w in self.worker_ids if w in listed},
                  **({"error": error} if error else {})}
            if unregistered or not self.worker_ids:
                return False, {**ev, "not_running": None}
            states = self.extras.states()
            ev["not_running"] = [w for w in self.worker_ids if (states.get(w) or {}).get("status") != "running"]
            return not ev["not_running"], ev
        return poll(once, self.params["verify_timeout_s"], interval_s=VERIFY_INTERVAL_S)

    def undo(self) -> list[str]:
        return self.extras.remove()


@register
class ExtraWorkersKind(FaultKind):
    """Start `count` extra mock workers on a hive's network (they register with that hive at once)."""

    name = "extra-workers"
    defaults = {"count": 2, "verify_timeout_s": 20.0}

    def validate(self, params: dict) -> None:
        count = params["count"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise NemesisError(f"{self.name}: bad param 'count' {count!r}; want a whole number in 1..{MAX_COUNT}")
        check_number(self.name, params, "verify_timeout_s", 0, 30)

    def targets(self, stack: Any) -> list[str]:
        return [s for s in services_of(stack) if role(s, stack) == "hive"] if is_docker(stack) else []

    def claims(self, stack: Any, target: str, params: dict) -> list[tuple[str, str]]:
        return []   # new containers beside the hive: no service of the stack is held

    def apply(self, stack: Any, target: str, **params: Any) -> ExtraWorkersJoined:
        p = self.check_params(params)
        self.check_target(stack, target)
        extras = ExtraWorkers(stack, str(getattr(stack, "run_id", "") or "manual"))
        try:
            ids = extras.start(target, p["count"])
        except Exception as exc:
            left = extras.remove()
            raise NemesisError(f"{self.name} {target}: {exc}" + (f" (and not removed: {left})" if left else "")) from exc
        fault = ExtraWorkersJoined(self.name, target, p, stack, extras, ids)
        fault.applied = {"workers": ids}
        return fault
