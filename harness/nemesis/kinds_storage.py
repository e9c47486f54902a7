"""Storage fault kinds on the one storage the stack's x-apiary block names (`storage: {service, dir, file,
user, header_hex, noticed}`): `storage-read-only` (chmod a-w as root; verify: a write as the service user
fails) and `storage-corrupt` (random bytes over the file while its service is stopped; verify: the header
read back from the volume changed and is not the format's, and, where the block says how the service
notices, the restarted service moved the file aside or logged the event). Every fact comes from the
stack's own topology (topology_of), so a second compose file brings its own storage."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from harness.errors import NemesisError
from harness.stack import topology_of
from harness.nemesis.protocol import (ActiveFault, FaultKind, check_number, ensure_running, is_docker, poll, register,
                                      require_running, run, services_of)

VOLUME_SHELL_TIMEOUT_S = 30
HEADER_BYTES = 16
HEADER_MARK = "--apiary-header--"    # separates the listing from the header in the corrupting shell's output


@dataclass(frozen=True)
class Storage:
    """The x-apiary storage block of one stack."""

    service: str = ""
    dir: str = "/data"
    file: str = ""
    user: str = "0"                  # the uid the service writes as (the write probe runs as it)
    header: bytes = b""              # what a sound file starts with (header_hex); b"": any change counts
    event: str = ""                  # the log event the service writes when it notices (noticed.event)
    moved_prefix: str = ""           # the name it moves a corrupt file aside under (noticed.moved_aside)

    @property
    def write_probe(self) -> list[str]:
        return ["sh", "-c", f"touch {self.dir}/.apiary-probe && rm -f {self.dir}/.apiary-probe"]


def storage_of(stack: Any) -> Storage:
    """The stack's storage block; NemesisError naming the field when header_hex is not hex."""
    block = topology_of(stack).storage
    noticed = block.get("noticed") or {}
    try:
        header = bytes.fromhex(str(block.get("header_hex", "")))
    except ValueError:
        raise NemesisError(f"x-apiary.storage.header_hex is not hex: {block.get('header_hex')!r}") from None
    directory = str(block.get("dir", "/data"))
    return Storage(service=str(block.get("service", "")), dir=directory, file=str(block.get("file", "")),
                   user=str(block.get("user", "0")), header=header, event=str(noticed.get("event", "")),
                   moved_prefix=str(noticed.get("moved_aside", "")))


def volume_shell(stack: Any, script: str) -> str:
    """Run `sh -c script` as root in a one-off container with the storage service's volumes (works while
    it is stopped); returns its output, NemesisError when it exits non-zero."""
    own = getattr(stack, "volume_shell", None)
    if callable(own):
        return own(script)
    service = storage_of(stack).service
    image = stack.container(service).image.id
    c = stack.client.containers.run(image, ["sh", "-c", script], detach=True, user="root",
                                    volumes_from=[stack.container_id(service)], network_mode="none",
                                    labels={"io.apiary.run-id": str(getattr(stack, "run_id", "")),
                                            "io.apiary.role": "storage-nemesis"})
    try:
        rc = c.wait(timeout=VOLUME_SHELL_TIMEOUT_S).get("StatusCode")
        out = c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        c.remove(force=True)
    if rc != 0:
        raise NemesisError(f"volume shell in a one-off container with {service}'s volumes exited {rc}: {out[-800:]}")
    return out


def data_files(stack: Any) -> list[str]:
    """File names in the storage dir (exec while its service runs); [] when the listing fails."""
    st = storage_of(stack)
    rc, out = run(stack, st.service, ["ls", "-1", st.dir])
    return out.split() if rc == 0 else []


def storage_targets(stack: Any) -> list[str]:
    st = storage_of(stack)
    return [st.service] if st.service and st.file and is_docker(stack) and st.service in services_of(stack) else []


def write_probe(stack: Any) -> tuple[int | None, str]:
    """(exit code, output) of a write into the storage dir as the service user; None when exec failed."""
    st = storage_of(stack)
    return run(stack, st.service, st.write_probe, user=st.user)


def header_cmd(path: str) -> str:
    return f"head -c {HEADER_BYTES} {path} | od -An -tx1 -v"


class ReadOnly(ActiveFault):
    """verify: a write as the service user fails; heal: chmod u+w, then the same write must succeed."""

    def check(self) -> tuple[bool, Any]:
        rc, out = write_probe(self.stack)
        return rc is not None and rc != 0, {"write_probe_exit": rc, "output": out.strip()[-200:]}

    def undo(self) -> list[str]:
        st = storage_of(self.stack)
        if (self.stack.inspect(st.service) or {}).get("status") == "running":
            rc, out = run(self.stack, st.service, ["sh", "-c", f"chmod -R u+w {st.dir}"])
            if rc != 0:
                return [f"chmod u+w {st.dir} exited {rc}: {out.strip()[-200:]}"]
            rc, out = write_probe(self.stack)
            return [] if rc == 0 else [f"{st.dir} still not writable for uid {st.user}: {out.strip()[-200:]}"]
        volume_shell(self.stack, f"chmod -R u+w {st.dir}")
        return []


class Corrupted(ActiveFault):
    """verify: the header read back changed and is not the format's, and (where the storage block says how)
    the restarted service noticed: it moved the file aside or logged the event. This stays true after heal,
    which only makes sure the service runs."""

    def check(self) -> tuple[bool, Any]:
        st = storage_of(self.stack)
        header = bytes.fromhex(self.applied.get("header_hex", ""))
        before = bytes.fromhex(self.applied.get("header_before_hex", ""))
        files_before = set(self.applied.get("files_before", []))
        since = self.applied.get("restarted_at")

        def once() -> tuple[bool, dict]:
            ev: dict = {}
            if st.moved_prefix:
                rc, out = run(self.stack, st.service, ["ls", "-1", st.dir])
                ev["moved_aside"] = sorted(n for n in out.split()
                                           if n.startswith(st.moved_prefix) and n not in files_before) if rc == 0 else []
            if st.event:
                ev["corrupt_event_logged"] = f'"{st.event}"' in (self.stack.logs(st.service, since=since) or "")
            return bool(not ev or ev.get("moved_aside") or ev.get("corrupt_event_logged")), ev
        noticed, ev = poll(once, self.params["verify_timeout_s"])
        changed = bool(header) and header != before
        not_format = bool(header) and header != st.header
        return changed and not_format and noticed, {
            "header_hex": header.hex(), "header_before_hex": before.hex(), "header_changed": changed,
            "header_is_the_format": not not_format, **ev}

    def undo(self) -> list[str]:
        return ensure_running(self.stack, storage_of(self.stack).service)


@register
class StorageReadOnly(FaultKind):
    """Remove write permission on the storage dir for the service's user; heal gives it back."""

    name = "storage-read-only"
    defaults: dict = {}

    def targets(self, stack: Any) -> list[str]:
        return storage_targets(stack)

    def apply(self, stack: Any, target: str, **params: Any) -> ReadOnly:
        p = self.check_params(params)
        self.check_target(stack, target)
        st = storage_of(stack)
        rc, out = run(stack, st.service, ["sh", "-c", f"chmod -R a-w {st.dir}"])
        if rc != 0:
            raise NemesisError(f"storage-read-only: chmod a-w {st.dir} in {st.service} exited {rc}: {out.strip()[-300:]}")
        return ReadOnly(self.name, target, p, stack)


@register
class StorageCorrupt(FaultKind):
    """Stop the storage service, overwrite its file with random bytes, read the header back, start it."""

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
        st = storage_of(stack)
        require_running(stack, self.name, st.service)
        stack.stop(st.service, timeout_s=p["stop_timeout_s"])
        try:
            out = volume_shell(stack, f"ls -1 {st.dir}; echo {HEADER_MARK}; {header_cmd(st.file)}; "
                                      f"rm -f {st.file}-wal {st.file}-shm; "
                                      f"head -c {int(p['garbage_bytes'])} /dev/urandom > {st.file}; "
                                      f"chown {st.user}:{st.user} {st.file}")
            listing, _, before = out.partition(HEADER_MARK)
            header_hex = "".join(volume_shell(stack, header_cmd(st.file)).split())
        except Exception as exc:
            left = ensure_running(stack, st.service)
            raise NemesisError(f"storage-corrupt: {exc!r}" + (f" (and {left})" if left else "")) from exc
        restarted_at = time.time()
        stack.start(st.service)
        fault = Corrupted(self.name, target, p, stack)
        fault.applied = {"files_before": listing.split(), "header_before_hex": "".join(before.split()),
                         "header_hex": header_hex, "restarted_at": restarted_at}
        return fault
