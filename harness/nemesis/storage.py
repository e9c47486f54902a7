"""Storage faults on the orchestrator's registry volume (/data): overwrite the SQLite file with garbage
while the orchestrator is stopped (a one-off container sharing its volumes), and make the volume
read-only for the service user (chmod as root via exec). Every fault is audited and healed."""
from __future__ import annotations

from typing import Any

from harness.nemesis.audit import FaultLog

DATA_DIR = "/data"
DB_PATH = "/data/registry.db"


class StorageNemesis:
    """corrupt_registry / make_read_only / make_writable on the orchestrator's /data volume."""

    def __init__(self, cluster: Any, log: FaultLog, run_id: str = "", service: str = "orchestrator"):
        self.cluster = cluster
        self.log = log
        self.run_id = run_id
        self.service = service
        self.read_only = False

    def _image(self) -> str:
        return self.cluster.container(self.service).image.id

    def volume_shell(self, script: str, timeout_s: float = 30) -> str:
        """Run `sh -c script` as root in a one-off container with the service's volumes (works while the
        service is stopped); returns its output, raises when it exits non-zero."""
        client = self.cluster.client
        c = client.containers.run(self._image(), ["sh", "-c", script], detach=True, user="root",
                                  volumes_from=[self.cluster.container_id(self.service)], network_mode="none",
                                  labels={"io.apiary.run-id": str(self.run_id), "io.apiary.role": "storage-nemesis"})
        try:
            rc = c.wait(timeout=timeout_s).get("StatusCode")
            out = c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            c.remove(force=True)
        if rc != 0:
            raise RuntimeError(f"volume shell exited {rc}: {out[-800:]}")
        return out

    def corrupt_registry(self, garbage_bytes: int = 16384) -> str:
        """Replace registry.db (and drop its -wal/-shm) with random bytes; the service must be stopped."""
        script = (f"test -f {DB_PATH} && echo had-db; rm -f {DB_PATH}-wal {DB_PATH}-shm; "
                  f"head -c {garbage_bytes} /dev/urandom > {DB_PATH}; chown 10001:10001 {DB_PATH}; "
                  f"ls -l {DATA_DIR}")
        return self.log.run("corrupt-registry", {"service": self.service, "path": DB_PATH},
                            lambda: self.volume_shell(script))

    def list_data(self) -> list[str]:
        """File names in the service's /data (via exec while it runs)."""
        out = self.cluster.exec(self.service, ["ls", "-1", DATA_DIR]).output.decode("utf-8", "replace")
        return [ln.strip() for ln in out.splitlines() if ln.strip()]

    def make_read_only(self) -> None:
        """Remove write permission on /data and its files (the service runs as a non-root user)."""
        self.read_only = True
        self.log.run("registry-read-only", {"service": self.service, "dir": DATA_DIR},
                     lambda: self.cluster.exec(self.service, ["sh", "-c", f"chmod -R a-w {DATA_DIR}"],
                                               user="root").exit_code)

    def make_writable(self) -> None:
        if not self.read_only:
            return
        self.log.run("registry-writable", {"service": self.service, "dir": DATA_DIR},
                     lambda: self.cluster.exec(self.service, ["sh", "-c", f"chmod -R u+w {DATA_DIR}"],
                                               user="root").exit_code)
        self.read_only = False

    def heal(self) -> list[str]:
        try:
            if self.read_only:
                st = self.cluster.inspect(self.service) or {}
                if st.get("status") == "running":
                    self.make_writable()
                else:
                    self.volume_shell(f"chmod -R u+w {DATA_DIR}")
                    self.read_only = False
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            return [f"storage heal: {exc!r}"]
        return []
