"""Registry unit tests: write-behind persistence, restart reload, corrupt file rebuilt, unwritable volume."""
from __future__ import annotations

import os
import sqlite3
import time

import pytest

from services.orchestrator import registry as registry_module
from services.orchestrator.metrics import Metrics
from services.orchestrator.registry import Registry
from .fakes import wait_until


def job_row(job_id, state, tenant="t", error=None, message=None):
    return (job_id, tenant, state, "tinyllama", 1, "w1", "h1", 1.0, 2.0, error, '[{"state": "accepted", "ts": 1}]',
            message)


def test_write_behind_and_restart_reload(tmp_path):
    path = str(tmp_path / "sub" / "registry.db")
    reg = Registry(path)
    assert reg.open()["restarted_jobs"] == 0 and reg.error is None
    reg.put("hives", "h1", ("h1", "ready", '["m"]', 1.0))
    reg.put("workers", "w1", ("w1", "h1", "tinyllama", '["tinyllama"]', 4, "ready", 1.0))
    reg.put("jobs", "j-done", job_row("j-done", "completed"))
    reg.put("jobs", "j-live", job_row("j-live", "dispatched"))
    reg.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    again = Registry(path)
    state = again.open()
    assert state["restarted_jobs"] == 1
    assert [h["id"] for h in state["hives"]] == ["h1"] and state["workers"][0]["slots"] == 4
    live = again.get_job("j-live")
    assert live["state"] == "failed" and live["error"] == "orchestrator_restarted"
    assert live["error_message"] == "the orchestrator restarted before the job finished"
    assert live["history"][-1]["reason"] == "orchestrator_restarted"
    assert again.get_job("j-done")["state"] == "completed"
    again.close()


def test_coalesces_many_updates(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    reg.open()
    for i in range(5000):
        reg.put("jobs", f"j{i % 100}", job_row(f"j{i % 100}", "completed"))
    reg.flush_now()
    assert reg.get_job("j99")["state"] == "completed"
    reg.close()


def test_corrupt_file_moved_aside_and_rebuilt(tmp_path):
    path = tmp_path / "registry.db"
    path.write_bytes(b"this is not a sqlite database at all" * 100)
    reg = Registry(str(path))
    state = reg.open()
    assert state["hives"] == [] and reg.error is None
    assert reg.corrupt_moved_to and os.path.exists(reg.corrupt_moved_to)
    assert os.path.basename(reg.corrupt_moved_to).startswith("registry.db.corrupt-")
    reg.put("hives", "h1", ("h1", "ready", "[]", 1.0))
    reg.close()
    assert sqlite3.connect(str(path)).execute("SELECT id FROM hives").fetchall() == [("h1",)]


def test_unwritable_path_keeps_serving(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    metrics = Metrics()
    reg = Registry(str(blocker / "registry.db"), metrics)  # parent is a file: cannot create the directory
    state = reg.open()
    assert state["hives"] == [] and reg.error and "registry unavailable" in reg.error
    reg.put("jobs", "j1", job_row("j1", "completed"))  # no exception: kept in memory
    assert reg.get_job("j1")["state"] == "completed"
    assert metrics.value("apiary_registry_errors_total") >= 1
    reg.close()


class Volume:
    """Make SQLite see the registry's volume as read-only, the way it does on a `ro` mount: it opens the
    file read-only without complaint and only a write fails ("attempt to write a readonly database")."""

    def __init__(self, monkeypatch):
        self.read_only = False
        real = sqlite3.connect

        def connect(database, *args, **kw):
            if self.read_only and not str(database).startswith("file:"):
                return real(f"file:{database}?mode=ro", *args, uri=True, **kw)
            return real(database, *args, **kw)
        monkeypatch.setattr(registry_module.sqlite3, "connect", connect)
        self.real_connect = real


@pytest.fixture
def volume(monkeypatch):
    return Volume(monkeypatch)


def stored_jobs(volume, path) -> list:
    conn = volume.real_connect(path)
    try:
        return conn.execute("SELECT id, state FROM jobs ORDER BY id").fetchall()
    finally:
        conn.close()


def test_volume_turns_read_only_mid_run(tmp_path, volume):
    metrics = Metrics()
    path = str(tmp_path / "r.db")
    reg = Registry(path, metrics, retry_interval_s=0.1)
    reg.open()
    wait_until(lambda: reg._conn is not None, 2, "writer connected")
    volume.read_only = True
    reg._conn.execute("PRAGMA query_only=ON")  # the open connection fails its writes too
    reg.put("jobs", "j1", job_row("j1", "completed"))
    wait_until(lambda: reg.error is not None, 2, "registry error reported")
    assert "readonly" in reg.error and metrics.value("apiary_registry_errors_total") >= 1
    reg.put("jobs", "j2", job_row("j2", "completed"))
    volume.read_only = False  # the volume recovers: a fresh connection writes the kept rows
    wait_until(lambda: reg.error is None, 3, "registry recovered")
    assert stored_jobs(volume, path) == [("j1", "completed"), ("j2", "completed")]
    assert reg.get_job("j1")["state"] == "completed"
    reg.close()


def test_start_on_read_only_volume_reports_error_then_recovers(tmp_path, volume):
    path = str(tmp_path / "r.db")
    first = Registry(path)
    first.open()
    first.put("jobs", "j0", job_row("j0", "completed"))
    first.close()
    volume.read_only = True
    metrics = Metrics()
    reg = Registry(path, metrics, retry_interval_s=0.1)
    assert reg.open()["restarted_jobs"] == 0
    assert reg.error and "readonly" in reg.error, "a read-only volume must be reported at startup"
    reg.put("jobs", "j1", job_row("j1", "completed"))
    time.sleep(0.3)  # several retries on the read-only volume
    assert reg.error and stored_jobs(volume, path) == [("j0", "completed")]
    volume.read_only = False
    wait_until(lambda: reg.error is None, 3, "registry recovered after the volume became writable")
    wait_until(lambda: len(stored_jobs(volume, path)) == 2, 2, "kept rows written")
    assert metrics.value("apiary_registry_errors_total") >= 2
    reg.close()


def test_jobs_failed_on_restart_are_written_once_writable(tmp_path, volume):
    path = str(tmp_path / "r.db")
    first = Registry(path)
    first.open()
    first.put("jobs", "j-live", job_row("j-live", "dispatched"))
    first.close()
    volume.read_only = True
    reg = Registry(path, retry_interval_s=0.1)
    assert reg.open()["restarted_jobs"] == 1 and reg.error
    volume.read_only = False
    wait_until(lambda: stored_jobs(volume, path) == [("j-live", "failed")], 3, "restart fix-up written")
    assert reg.get_job("j-live")["error"] == "orchestrator_restarted"
    reg.close()


def test_rows_beyond_the_bound_are_dropped_and_counted(tmp_path, volume, monkeypatch):
    monkeypatch.setattr(registry_module, "PENDING_MAX", 5)
    path = str(tmp_path / "r.db")
    Registry(path).open()
    volume.read_only = True
    metrics = Metrics()
    reg = Registry(path, metrics, retry_interval_s=0.1)
    reg.open()
    for i in range(8):
        reg.put("jobs", f"j{i}", job_row(f"j{i}", "completed"))
    assert reg.dropped == 3 and metrics.value("apiary_registry_dropped_rows_total") == 3
    volume.read_only = False
    wait_until(lambda: reg.error is None, 3, "registry recovered")
    wait_until(lambda: len(stored_jobs(volume, path)) == 5, 2, "kept rows written")
    assert [r[0] for r in stored_jobs(volume, path)] == ["j3", "j4", "j5", "j6", "j7"]  # the newest kept
    reg.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_file_moved_aside(tmp_path):
    path = tmp_path / "registry.db"
    Registry(str(path)).open()
    os.chmod(path, 0)
    reg = Registry(str(path))
    reg.open()
    assert reg.corrupt_moved_to and reg.error is None
    reg.close()


def test_a_failed_job_read_back_keeps_its_error_code_and_message(tmp_path):
    """Evicted from memory, a failed job still says what happened, not only its code."""
    path = str(tmp_path / "r.db")
    reg = Registry(path)
    reg.open()
    reg.put("jobs", "j-lost", job_row("j-lost", "failed", error="worker_lost",
                                      message="worker w1 was lost and no attempt was left"))
    reg.close()
    again = Registry(path)
    again.open()
    job = again.get_job("j-lost")
    again.close()
    assert (job["error"], job["error_message"]) == ("worker_lost", "worker w1 was lost and no attempt was left")


def test_a_registry_file_of_the_first_schema_is_migrated_and_keeps_its_rows(tmp_path):
    """A jobs table without error_message gains the column on open; old rows read back with no message."""
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, tenant TEXT, state TEXT, model TEXT, attempts INTEGER,"
                 " worker TEXT, hive TEXT, created REAL, updated REAL, error TEXT, history TEXT)")
    conn.execute("INSERT INTO jobs VALUES ('j-old','t','failed','tinyllama',1,'w1','h1',1.0,2.0,'timeout','[]')")
    conn.commit()
    conn.close()
    reg = Registry(path)
    assert reg.open()["restarted_jobs"] == 0 and reg.error is None
    old = reg.get_job("j-old")
    assert (old["state"], old["error"], old["error_message"]) == ("failed", "timeout", None)
    reg.put("jobs", "j-new", job_row("j-new", "failed", error="rejected", message="no worker serves the model"))
    reg.close()
    again = Registry(path)
    again.open()
    assert again.get_job("j-new")["error_message"] == "no worker serves the model"
    assert again.get_job("j-old")["error"] == "timeout"
    again.close()


def test_a_row_sqlite_cannot_bind_is_dropped_and_counted_and_the_writer_keeps_writing(tmp_path):
    metrics = Metrics()
    reg = Registry(str(tmp_path / "r.db"), metrics=metrics)
    reg.open()
    reg.put("workers", "w-big", ("w-big", "h1", "tinyllama", '["tinyllama"]', 2 ** 64 - 1, "ready", 1.0))  # overflows
    reg.put("jobs", "j-ok", job_row("j-ok", "completed"))
    wait_until(lambda: metrics.registry_errors._value.get() == 1, 2.0, "the unbindable row counted as a registry error")
    reg.put("jobs", "j-later", job_row("j-later", "completed"))   # written by the same, still living writer
    reg.close()
    conn = sqlite3.connect(str(tmp_path / "r.db"))
    assert sorted(r[0] for r in conn.execute("SELECT id FROM jobs")) == ["j-later", "j-ok"]
    assert conn.execute("SELECT count(*) FROM workers").fetchone()[0] == 0
    conn.close()
