"""Extra mock-worker containers joined to a hive's network (the stack's own mock-worker image), started
all at once and removed again (the `extra-workers` fault kind, apiary_suite/kinds_workers.py, wraps
this). Labelled with the run id so the runner's sweep removes them too if no heal ever ran."""
from __future__ import annotations

import concurrent.futures as futures
import uuid
from typing import Any

EXTRA_ROLE = "extra-worker"
TEMPLATE = "worker-a1"     # the compose worker whose image and APIARY_* environment the extras copy
STOP_TIMEOUT_S = 2
CURVE_MOUNT = "/run/secrets/curve"   # where compose mounts each service's CURVE key directory


def gone(exc: Exception) -> bool:
    """The Docker error says the container no longer exists (or is already being removed)."""
    text = str(exc)
    return "No such container" in text or "already in progress" in text or "404" in text


class ExtraWorkers:
    """Start n extra workers on hive `hive`'s network; remove() stops them (SIGTERM, then force)."""

    def __init__(self, cluster: Any, run_id: str):
        self.cluster = cluster
        self.run_id = run_id
        self.containers: dict[str, Any] = {}     # worker id -> container
        self.ids: list[str] = []

    def image(self) -> str:
        """The image id the stack's workers run (so a fresh build is used)."""
        return self.cluster.container(TEMPLATE).image.id

    def env_of(self, service: str) -> dict[str, str]:
        env = self.cluster.container(service).attrs["Config"].get("Env") or []
        return dict(e.split("=", 1) for e in env if "=" in e)

    def start(self, hive: str, n: int, prefix: str | None = None) -> list[str]:
        """Start n workers at once (one thread each); returns their worker ids. On a failure the ones
        that started stay in `containers` (remove() takes them) and RuntimeError names the failures."""
        prefix = prefix or f"extra-{uuid.uuid4().hex[:6]}"
        base = self.env_of(TEMPLATE)
        image = self.image()
        network = self.cluster.network_name(f"{hive}-net")
        ids = [f"{prefix}-{i}" for i in range(1, n + 1)]

        def run_one(worker_id: str) -> Any:
            env = {k: v for k, v in base.items() if k.startswith("APIARY_") and k not in ("APIARY_WORKER_ID",)}
            env.update(APIARY_WORKER_ID=worker_id, APIARY_HIVE_ADDR=f"tcp://{hive}:5556")
            root = getattr(self.cluster, "curve_root", None)  # the worker role's keys, mounted like compose's
            keys = {"volumes": {str(root / "worker"): {"bind": CURVE_MOUNT, "mode": "ro"}}} if root else {}
            return self.cluster.client.containers.run(
                image, detach=True, environment=env, network=network, hostname=worker_id, **keys,
                name=f"{self.cluster.project}_{worker_id}", mem_limit="256m", memswap_limit="256m",
                labels={"io.apiary.run-id": str(self.run_id), "io.apiary.role": EXTRA_ROLE})

        errors = []
        with futures.ThreadPoolExecutor(max(1, n)) as pool:
            outcomes = {w: pool.submit(run_one, w) for w in ids}
            for worker_id, f in outcomes.items():
                try:
                    self.containers[worker_id] = f.result()
                except Exception as exc:  # noqa: BLE001 - remove() takes what started; reported below
                    errors.append(f"{worker_id}: {exc!r}"[:300])
        self.ids += ids
        if errors:
            raise RuntimeError(f"could not start {len(errors)} of {n} extra workers: {errors[:3]}")
        return ids

    def states(self) -> dict[str, dict]:
        """worker id -> container state (status, exit code) of every extra worker not yet removed."""
        out = {}
        for worker_id, c in list(self.containers.items()):
            try:
                c.reload()
                out[worker_id] = {"status": c.status, "exit_code": c.attrs["State"].get("ExitCode")}
            except Exception as exc:  # noqa: BLE001 - reported as the state
                out[worker_id] = {"status": "missing" if gone(exc) else "unknown", "error": repr(exc)[:200]}
        return out

    def remove(self) -> list[str]:
        """Stop (SIGTERM, 2 s) and remove every extra worker, then check each is gone; returns what could
        not be removed (never raises)."""
        errors: list[str] = []

        def rm(item: tuple[str, Any]) -> None:
            worker_id, c = item
            try:
                c.stop(timeout=STOP_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - already stopped or gone
                pass
            try:
                c.remove(force=True)
            except Exception as exc:  # noqa: BLE001
                if not gone(exc):
                    errors.append(f"remove extra worker {worker_id}: {exc!r}"[:300])
                    return
            try:
                c.reload()
            except Exception as exc:  # noqa: BLE001 - gone, as it should be
                if gone(exc):
                    self.containers.pop(worker_id, None)
                    return
                errors.append(f"extra worker {worker_id}: {exc!r}"[:300])
                return
            errors.append(f"extra worker {worker_id} still exists ({c.status}) after remove")
        items = list(self.containers.items())
        with futures.ThreadPoolExecutor(max(1, len(items))) as pool:
            list(pool.map(rm, items))
        return errors
