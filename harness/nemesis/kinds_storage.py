"""Storage fault kinds on the orchestrator's registry volume (/data): `storage-read-only` (chmod a-w as
root; verify: a write as the service user fails) and `storage-corrupt` (random bytes over registry.db
while the orchestrator is stopped; verify: the header read back from the volume is not SQLite's, and
the restarted orchestrator moved the corrupt file aside)."""
from __future__ import annotations

import time
from typing import Any

from harness.errors import NemesisError
from harness.stack import default_topology
from harness.nemesis.protocol import (ActiveFault, FaultKind, check_number, ensure_running, is_docker, poll, register,
                                      require_running, run, services_of)

_STORAGE = default_topology().storage   # x-apiary.storage of the compose file: which volume the kinds touch
SERVICE = _STORAGE.get("service", "")
DATA_DIR = _STORAGE.get("dir", "/data")
DB_PATH = _STORAGE.get("file", f"{DATA_DIR}/registry.db")
VOLUME_SHELL_TIMEOUT_S = 30
SERVICE_USER = str(_STORAGE.get("user", "0"))     # the uid the service writes as (the write probe runs as it)
SQLITE_HEADER = b"SQLite format 3\x00"
WRITE_PROBE = ["sh", "-c", f"touch {DATA_DIR}/.apiary-probe && rm -f {DATA_DIR}/.apiary-probe"]
MOVED_PREFIX = DB_PATH.rsplit("/", 1)[-1] + ".corrupt-"
CORRUPT_EVENT = '"registry.corrupt"'


def volume_shell(stack: Any, script: str) -> str:
    """Run `sh -c script` as root in a one-off container with the orchestrator's volumes (works while it
    is stopped); returns its output, NemesisError when it exits non-zero."""
    own = getattr(stack, "volume_shell", None)
    if callable(own):
        return own(script)
    image = stack.container(SERVICE).image.id
    c = stack.client.containers.run(image, ["sh", "-c", script], detach=True, user="root",
                                    volumes_from=[stack.container_id(SERVICE)], network_mode="none",
                                    labels={"io.apiary.run-id": str(getattr(stack, "run_id", "")),
                                            "io.apiary.role": "storage-nemesis"})
    try:
        rc = c.wait(timeout=VOLUME_SHELL_TIMEOUT_S).get("StatusCode")
        out = c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        c.remove(force=True)
    if rc != 0:
        raise NemesisError(f"volume shell in a one-off container with {SERVICE}'s volumes exited {rc}: {out[-800:]}")
    return out


def data_files(stack: Any) -> list[str]:
    """File names in the orchestrator's /data (exec while it runs); [] when the listing fails."""
    rc, out = run(stack, SERVICE, ["ls", "-1", DATA_DIR])
    return out.split() if rc == 0 else []


def storage_targets(stack: Any) -> list[str]:
    return [SERVICE] if SERVICE and is_docker(stack) and SERVICE in services_of(stack) else []


def write_probe(stack: Any) -> tuple[int | None, str]:
    """(exit code, output) of a write into /data as the service user; None when exec failed."""
    return run(stack, SERVICE, WRITE_PROBE, user=SERVICE_USER)


class ReadOnly(ActiveFault):
    """verify: a write as the service user fails; heal: chmod u+w, then the same write must succeed."""

    def check(self) -> tuple[bool, Any]:
        rc, out = write_probe(self.stack)
        return rc is not None and rc != 0, {"write_probe_exit": rc, "output": out.strip()[-200:]}

    def undo(self) -> list[str]:
        if (self.stack.inspect(SERVICE) or {}).get("status") == "running":
            rc, out = run(self.stack, SERVICE, ["sh", "-c", f"chmod -R u+w {DATA_DIR}"])
            if rc != 0:
                return [f"chmod u+w {DATA_DIR} exited {rc}: {out.strip()[-200:]}"]
            rc, out = write_probe(self.stack)
            return [] if rc == 0 else [f"{DATA_DIR} still not writable for uid {SERVICE_USER}: {out.strip()[-200:]}"]
        volume_shell(self.stack, f"chmod -R u+w {DATA_DIR}")
        return []


class Corrupted(ActiveFault):
    """verify: the header read back was not SQLite's and the orchestrator moved the file aside (or logged
    registry.corrupt); this stays true after heal, which only makes sure the orchestrator runs."""

    def check(self) -> tuple[bool, Any]:
        header = bytes.fromhex(self.applied.get("header_hex", ""))
        before = set(self.applied.get("files_before", []))
        since = self.applied.get("restarted_at")

        def once() -> tuple[bool, dict]:
            rc, out = run(self.stack, SERVICE, ["ls", "-1", DATA_DIR])
            moved = sorted(n for n in out.split() if n.startswith(MOVED_PREFIX) and n not in before) if rc == 0 else []
            logged = CORRUPT_EVENT in (self.stack.logs(SERVICE, since=since) or "")
            return bool(moved or logged), {"moved_aside": moved, "corrupt_event_logged": logged}
        noticed, ev = poll(once, self.params["verify_timeout_s"])
        not_sqlite = bool(header) and header != SQLITE_HEADER
        return not_sqlite and noticed, {"header_hex": header.hex(), "header_is_sqlite": not not_sqlite, **ev}

    def undo(self) -> list[str]:
        return ensure_running(self.stack, SERVICE)


@register
class StorageReadOnly(FaultKind):
    """Remove write permission on /data for the orchestrator's user; heal gives it back."""

    name = "storage-read-only"
    defaults: dict = {}

    def targets(self, stack: Any) -> list[str]:
        return storage_targets(stack)

    def apply(self, stack: Any, target: str, **params: Any) -> ReadOnly:
        p = self.check_params(params)
        self.check_target(stack, target)
        rc, out = run(stack, SERVICE, ["sh", "-c", f"chmod -R a-w {DATA_DIR}"])
        if rc != 0:
            raise NemesisError(f"storage-read-only: chmod a-w {DATA_DIR} in {SERVICE} exited {rc}: {out.strip()[-300:]}")
        return ReadOnly(self.name, target, p, stack)


@register
class StorageCorrupt(FaultKind):
    """Stop the orchestrator, overwrite registry.db with random bytes, read its header back, start it."""

    name = "storage-corrupt"
    defaults = {"garbage_bytes": 16384, "stop_timeout_s": 10, "verify_timeout_s": 10.0}

    def validate(self, params: dict) -> None:
        check_number(self.name, params, "garbage_bytes", 16, 1 << 24)
        check_number(self.name, params, "stop_timeout_s", 0, 60)
        check_number(self.name, params, "verify_timeout_s", 0, 30)

    def targets(self, stack: Any) -> list[str]:
        return storage_targets(stack)

    def apply(self, stack: Any, target: str, **params: Any) -> Corrupted:
        p = self.check_params(params)
        self.check_target(stack, target)
        require_running(stack, self.name, SERVICE)
        stack.stop(SERVICE, timeout_s=p["stop_timeout_s"])
        try:
            listing = volume_shell(stack, f"ls -1 {DATA_DIR}; rm -f {DB_PATH}-wal {DB_PATH}-shm; "
                                          f"head -c {int(p['garbage_bytes'])} /dev/urandom > {DB_PATH}; "
                                          f"chown {SERVICE_USER}:{SERVICE_USER} {DB_PATH}")
            header_hex = "".join(volume_shell(stack, f"head -c 16 {DB_PATH} | od -An -tx1 -v").split())
        except Exception as exc:
            left = ensure_running(stack, SERVICE)
            raise NemesisError(f"storage-corrupt: {exc!r}" + (f" (and {left})" if left else "")) from exc
        restarted_at = time.time()
        stack.start(SERVICE)
        fault = Corrupted(self.name, target, p, stack)
        fault.applied = {"files_before": listing.split(), "header_hex": header_hex, "restarted_at": restarted_at}
        return fault
