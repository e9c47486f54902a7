"""Docker engines as the harness sees them: a client per URL, what an engine is and holds, images shipped to
an engine that lacks them (docker save | docker load over the engines' APIs, no registry).
LocalEngine, a second dockerd on this machine for tests and benchmarks, is harness/local_engine.py.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

from harness.errors import EnvironmentSetupError
from harness.sweep import leftovers

SHIP_CHUNK = 1 << 20


def _name(url: str | None) -> str:
    """How an engine is named in errors."""
    return url or "the default engine (DOCKER_HOST)"


def first_line(exc: BaseException) -> str:
    """The first line of an error (its type when it says nothing)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def engine_client(url: str | None, timeout: float = 30):
    """A Docker SDK client for engine `url` (None: the default one, DOCKER_HOST/env); the error names the URL."""
    import docker
    try:
        if url is None:
            return docker.from_env(timeout=timeout)
        return docker.DockerClient(base_url=url, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - the SDK asks the engine its API version here
        raise EnvironmentSetupError(f"Docker engine {_name(url)} does not answer", first_line(exc)) from exc


@contextlib.contextmanager
def session(url: str | None, timeout: float = 30, doing: str = "answer"):
    """A client for engine `url`, closed afterwards; an SDK error becomes EnvironmentSetupError naming it."""
    client = engine_client(url, timeout)
    try:
        yield client
    except Exception as exc:  # noqa: BLE001 - docker and requests errors alike
        raise EnvironmentSetupError(f"Docker engine {_name(url)} did not {doing}", first_line(exc)) from exc
    finally:
        client.close()


def alive(url: str | None, timeout_s: float = 2) -> bool:
    """The engine answers a ping within `timeout_s`."""
    try:
        with session(url, timeout_s) as client:
            return bool(client.ping())
    except EnvironmentSetupError:
        return False


def describe_engine(url: str | None) -> dict:
    """{url, id, name, server_version, images, containers, root_dir} of an engine, or EnvironmentSetupError."""
    with session(url, 10, "answer `docker info`") as client:
        info = client.info()
    return {"url": url, "id": info.get("ID"), "name": info.get("Name"), "server_version": info.get("ServerVersion"),
            "images": info.get("Images"), "containers": info.get("Containers"), "root_dir": info.get("DockerRootDir")}


def leftovers_on(url: str | None, run_label_value: str) -> dict[str, list[str]]:
    """Containers, networks and volumes on engine `url` still labelled io.apiary.run=<value> (harness.sweep)."""
    with session(url, 30, f"list what run {run_label_value} left") as client:
        return leftovers(client, run_label_value)


def image_ids(url: str | None, refs: list[str]) -> dict[str, str | None]:
    """The image id of each ref on engine `url` (None: absent there)."""
    import docker
    out: dict[str, str | None] = {}
    with session(url, 30, f"inspect image(s) {', '.join(refs)}") as client:
        for ref in refs:
            try:
                out[ref] = client.images.get(ref).id
            except docker.errors.ImageNotFound:
                out[ref] = None
    return out


def missing_images(dst_url: str | None, image_refs_with_ids: dict[str, str]) -> list[str]:
    """The refs whose image on `dst_url` is absent or has another id than the one given."""
    found = image_ids(dst_url, list(image_refs_with_ids))
    return [ref for ref, want in image_refs_with_ids.items() if found[ref] != want]


def ship_images(src_url: str | None, dst_url: str, refs: list[str], deadline_s: float = 600,
                one_stream: bool = True) -> dict[str, Any]:
    """Stream `docker save` on the source engine into `docker load` on the destination (through a 1 MiB
    buffer, never the whole tarball) and check the ids match. one_stream: all refs in one tarball (shared
    layers go once), each ref's seconds are then that stream's; else one stream per ref.
    Returns {ref: seconds, "bytes": n, "total_s": s, "streams": k}."""
    refs = list(dict.fromkeys(refs))
    want = image_ids(src_url, refs)
    absent = [ref for ref, image_id in want.items() if image_id is None]
    if absent:
        raise EnvironmentSetupError(f"image(s) {', '.join(absent)} not on the source engine {_name(src_url)}",
                                    f"nothing to ship to {dst_url}")
    out: dict[str, Any] = {"bytes": 0, "streams": 0}
    start = time.monotonic()
    groups = [refs] if one_stream and refs else [[ref] for ref in refs]
    for group in groups:
        began = time.monotonic()
        out["bytes"] += _save_into_load(src_url, dst_url, group, start + deadline_s, deadline_s)
        out.update({ref: round(time.monotonic() - began, 3) for ref in group})
        out["streams"] += 1
    out["total_s"] = round(time.monotonic() - start, 3)
    got = image_ids(dst_url, refs)
    wrong = [f"{ref} (source {want[ref]}, {dst_url}: {got[ref]})" for ref in refs if got[ref] != want[ref]]
    if wrong:
        raise EnvironmentSetupError(f"images shipped to {dst_url} differ from {_name(src_url)}", "; ".join(wrong))
    return out


def _cli_env(url: str | None) -> dict:
    """The docker CLI's environment for engine `url` (None: as inherited)."""
    env = {k: v for k, v in os.environ.items() if url is None or k != "DOCKER_CONTEXT"}
    return env if url is None else dict(env, DOCKER_HOST=url)


def _save_into_load(src_url: str | None, dst_url: str, refs: list[str], until: float, deadline_s: float) -> int:
    """One `docker save refs` piped into one `docker load`; returns the bytes streamed."""
    docker_cli = shutil.which("docker")
    if not docker_cli:
        raise EnvironmentSetupError("docker CLI not found on PATH", f"needed to ship {', '.join(refs)} to {dst_url}")
    what = f"{', '.join(refs)} from {_name(src_url)} to {dst_url}"
    with tempfile.TemporaryFile() as save_err, tempfile.TemporaryFile() as load_out:
        save = subprocess.Popen([docker_cli, "save", *refs], stdout=subprocess.PIPE, stderr=save_err,
                                env=_cli_env(src_url))
        load = subprocess.Popen([docker_cli, "load"], stdin=subprocess.PIPE, stdout=load_out,
                                stderr=subprocess.STDOUT, env=_cli_env(dst_url))
        for pipe in (save.stdout, load.stdin):
            try:
                fcntl.fcntl(pipe.fileno(), 1031, SHIP_CHUNK)     # F_SETPIPE_SZ: fewer, larger reads
            except OSError:
                pass
        expired = threading.Event()
        timer = threading.Timer(max(0.0, until - time.monotonic()),
                                lambda: (expired.set(), save.kill(), load.kill()))
        timer.start()
        sent = 0
        try:
            while chunk := save.stdout.read1(SHIP_CHUNK):
                load.stdin.write(chunk)
                sent += len(chunk)
        except BrokenPipeError:
            save.kill()                           # load exited early: its output says why (below)
        finally:
            try:
                load.stdin.close()
            except BrokenPipeError:
                pass
            save_rc, load_rc = save.wait(), load.wait()
            timer.cancel()
        if expired.is_set():
            raise EnvironmentSetupError(f"shipping {what} did not finish within {deadline_s:g}s",
                                        f"{sent} bytes streamed; docker save and docker load were killed")
        for rc, log, verb in ((save_rc, save_err, f"docker save on {_name(src_url)}"),
                              (load_rc, load_out, f"docker load on {dst_url}")):
            if rc != 0:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip()[-1500:]
                raise EnvironmentSetupError(f"shipping {what}: {verb} exited {rc}", tail)
    return sent
