"""Extra mock-worker containers joined to a hive's network (the stack's own mock-worker image), started
all at once and removed at scenario end (also on failure). Labelled with the run id so the runner's
sweep removes them too if the scenario's own cleanup never ran."""
from __future__ import annotations

import concurrent.futures as futures
import uuid
from typing import Any

EXTRA_ROLE = "extra-worker"


class ExtraWorkers:
    """Start n extra workers on hive `hive`'s network; remove() stops them (SIGTERM, then force)."""

    def __init__(self, cluster: Any, run_id: str):
        self.cluster = cluster
        self.run_id = run_id
        self.containers: list[Any] = []
        self.ids: list[str] = []

    def image(self) -> str:
        """The image id the stack's workers run (so a fresh build is used)."""
        return self.cluster.container("worker-a1").image.id

    def env_of(self, service: str) -> dict[str, str]:
        env = self.cluster.container(service).attrs["Config"].get("Env") or []
        return dict(e.split("=", 1) for e in env if "=" in e)

    def start(self, hive: str, n: int, prefix: str | None = None) -> list[str]:
        """Start n workers at once (one thread each); returns their worker ids."""
        prefix = prefix or f"extra-{uuid.uuid4().hex[:6]}"
        base = self.env_of("worker-a1")
        image = self.image()
        network = self.cluster.network_name(f"{hive}-net")
        ids = [f"{prefix}-{i}" for i in range(1, n + 1)]

        def run_one(worker_id: str) -> Any:
            env = {k: v for k, v in base.items() if k.startswith("APIARY_") and k not in ("APIARY_WORKER_ID",)}
            env.update(APIARY_WORKER_ID=worker_id, APIARY_HIVE_ADDR=f"tcp://{hive}:5556")
            return self.cluster.client.containers.run(
                image, detach=True, environment=env, network=network, hostname=worker_id,
                name=f"{self.cluster.project}_{worker_id}", mem_limit="256m", memswap_limit="256m",
                labels={"io.apiary.run-id": str(self.run_id), "io.apiary.role": EXTRA_ROLE})

        with futures.ThreadPoolExecutor(n) as pool:
            outcomes = [pool.submit(run_one, w) for w in ids]
            errors = []
            for f in outcomes:
                try:
                    self.containers.append(f.result())
                except Exception as exc:  # noqa: BLE001 - remove what started, then report
                    errors.append(repr(exc))
        self.ids += ids
        if errors:
            raise RuntimeError(f"could not start {len(errors)} of {n} extra workers: {errors[:3]}")
        return ids

    def states(self) -> dict[str, dict]:
        """worker id -> container state (status, exit code)."""
        out = {}
        for c in self.containers:
            try:
                c.reload()
                out[c.name.rsplit("_", 1)[-1]] = {"status": c.status, "exit_code": c.attrs["State"].get("ExitCode")}
            except Exception as exc:  # noqa: BLE001
                out[c.name] = {"error": repr(exc)}
        return out

    def remove(self) -> list[str]:
        """Stop (SIGTERM, 2 s) and remove every extra worker; returns errors (never raises)."""
        errors: list[str] = []

        def rm(c: Any) -> None:
            try:
                c.stop(timeout=2)
            except Exception:  # noqa: BLE001 - already stopped or gone
                pass
            try:
                c.remove(force=True)
            except Exception as exc:  # noqa: BLE001
                if "No such container" not in str(exc) and "already in progress" not in str(exc):
                    errors.append(f"{c.name}: {exc!r}")
        with futures.ThreadPoolExecutor(max(1, len(self.containers))) as pool:
            list(pool.map(rm, self.containers))
        self.containers.clear()
        return errors
