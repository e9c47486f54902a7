"""SQLite registry (WAL) of hives, workers, models and jobs with a batched write-behind thread.

The event loop never waits for SQLite: rows are coalesced in a dict and one background thread writes
them every ~25 ms in a single transaction (synchronous=NORMAL, so no fsync per job).  A corrupt file is
moved aside and rebuilt; an unwritable volume puts the registry in an error state that /health shows
while the service keeps serving from memory.

Writability is probed with a real write at startup (SQLite silently opens a file on a read-only
volume read-only, and that only shows at the first write).  After a failed write the connection is
closed and a fresh one retries the kept rows every `retry_interval_s`; the rows wait in a bounded
buffer (the oldest are dropped and counted beyond PENDING_MAX) and the error clears at the first
successful write.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

from services.protocol import TERMINAL_STATES, dumps, loads

log = logging.getLogger("orchestrator.registry")

TERMINAL_PARAMS = tuple(sorted(TERMINAL_STATES))  # the restart query's NOT IN (?,?,?) parameters
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hives (id TEXT PRIMARY KEY, state TEXT, models TEXT, updated REAL)",
    "CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, hive TEXT, model TEXT, models TEXT, slots INTEGER,"
    " state TEXT, updated REAL)",
    "CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, state TEXT, detail TEXT, updated REAL)",
    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, tenant TEXT, state TEXT, model TEXT, attempts INTEGER,"
    " worker TEXT, hive TEXT, created REAL, updated REAL, error TEXT, history TEXT, error_message TEXT)",
)
# Columns added after the first release: (table, column, type), added to an older file on open.
MIGRATIONS = (("jobs", "error_message", "TEXT"),)
JOB_COLUMNS = ("id", "tenant", "state", "model", "attempts", "worker", "hive", "created", "updated", "error",
               "history", "error_message")
UPSERT = {
    "hives": "INSERT OR REPLACE INTO hives VALUES (?,?,?,?)",
    "workers": "INSERT OR REPLACE INTO workers VALUES (?,?,?,?,?,?,?)",
    "models": "INSERT OR REPLACE INTO models VALUES (?,?,?,?)",
    "jobs": f"INSERT OR REPLACE INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({','.join('?' * len(JOB_COLUMNS))})",
}
PENDING_MAX = 200_000  # rows held while the volume is failing; beyond, the oldest are dropped (counted)
OPS_MAX = 1_000        # statements (admin resets, restart fix-ups) held while failing
FAIL_RESTARTED = ("UPDATE jobs SET state='failed', error='orchestrator_restarted', error_message="
                  "'the orchestrator restarted before the job finished', updated=?, history=? WHERE id=?")


class Registry:
    """Persistent tables with write-behind; `error` is None when healthy, else a human-readable reason."""

    def __init__(self, path: str, metrics=None, flush_interval_s: float = 0.025, retry_interval_s: float = 1.0):
        self.path = path
        self.metrics = metrics
        self.flush_interval_s = flush_interval_s
        self.retry_interval_s = retry_interval_s
        self.error: str | None = None
        self.dropped = 0  # rows lost because the buffer bound was hit while the volume failed
        self._error_logged: set[str] = set()
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], tuple] = {}
        self._ops: list[tuple[str, list | None]] = []  # (statement, executemany rows or None)
        self._wake = threading.Event()
        self._stop = False
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self.corrupt_moved_to: str | None = None

    # ---- startup -------------------------------------------------------------------------------
    def open(self) -> dict:
        """Open (or rebuild) the database, fail jobs left unfinished by a restart, return the loaded state."""
        state = {"hives": [], "workers": [], "models": [], "restarted_jobs": 0}
        try:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            conn = self._connect_checked()
            try:
                self._probe(conn)
                writable = True
            except sqlite3.Error as exc:
                self._fail(f"registry unavailable at {self.path}: {exc}")
                writable = False
            state = self._load(conn, write=writable)
            conn.close()
            self._conn = None
            self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            self._fail(f"registry unavailable at {self.path}: {exc}")
            state = self._load_readonly() or state
        self._thread = threading.Thread(target=self._run, name="registry-writer", daemon=True)
        self._thread.start()
        return state

    def _connect_checked(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            parent = os.path.dirname(os.path.abspath(self.path))
            unreadable = os.path.exists(self.path) and not os.access(self.path, os.R_OK | os.W_OK) \
                and os.access(parent, os.W_OK)
            if isinstance(exc, sqlite3.OperationalError) and not unreadable:
                raise  # read-only or full volume, missing directory: error state, keep serving

            stamp = time.strftime("%Y%m%dT%H%M%S")
            moved = f"{self.path}.corrupt-{stamp}"
            os.replace(self.path, moved)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, moved + suffix)
            self.corrupt_moved_to = moved
            log.error("registry database is corrupt; moved aside and rebuilt",
                      extra={"event": "registry.corrupt", "path": self.path, "moved_to": moved, "error": str(exc)})
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=1.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            row = conn.execute("PRAGMA quick_check").fetchone()
            if not row or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check failed: {row[0] if row else 'no result'}")
            for statement in SCHEMA:
                conn.execute(statement)
            for table, column, kind in MIGRATIONS:
                if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    @staticmethod
    def _probe(conn: sqlite3.Connection) -> None:
        """Write to the database (the header's user_version, unchanged); raise sqlite3.Error when it cannot."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"PRAGMA user_version={int(version)}")
            conn.execute("COMMIT")
        except sqlite3.Error:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _load_readonly(self) -> dict | None:
        """Best effort: read what an unwritable database still holds."""
        if not os.path.isfile(self.path):
            return None
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            try:
                state = self._load(conn, write=False)
            finally:
                conn.close()
            self._reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            return state
        except sqlite3.Error:
            return None

    def _load(self, conn: sqlite3.Connection, write: bool = True) -> dict:
        hives = [{"id": r[0], "models": loads(r[1] or "[]")} for r in conn.execute("SELECT id, models FROM hives")]
        workers = [{"id": r[0], "hive": r[1], "model": r[2], "models": loads(r[3] or "[]"), "slots": r[4]}
                   for r in conn.execute("SELECT id, hive, model, models, slots FROM workers")]
        models = [{"name": r[0], "state": r[1], "detail": loads(r[2] or "{}")}
                  for r in conn.execute("SELECT name, state, detail FROM models")]
        now = time.time()
        rows = conn.execute("SELECT id, history FROM jobs WHERE state NOT IN (?,?,?)", TERMINAL_PARAMS).fetchall()
        updates = []
        for job_id, history in rows:
            hist = loads(history or "[]")
            hist.append({"state": "failed", "ts": now, "reason": "orchestrator_restarted"})
            updates.append((now, dumps(hist).decode(), job_id))
        if updates and not write:  # written once the volume accepts writes again
            with self._lock:
                self._ops.append((FAIL_RESTARTED, updates))
        elif updates:
            conn.execute("BEGIN")
            conn.executemany(FAIL_RESTARTED, updates)
            conn.execute("COMMIT")
        if rows:
            log.warning("jobs unfinished before the restart marked failed",
                        extra={"event": "registry.jobs_failed_on_restart", "count": len(rows)})
        return {"hives": hives, "workers": workers, "models": models, "restarted_jobs": len(rows)}

    # ---- writes (event loop side: dict insert only) --------------------------------------------
    def put(self, table: str, key: str, row: tuple) -> None:
        """Queue an upsert of one row; later puts of the same key replace it before it is written."""
        with self._lock:
            pending = self._pending
            pending[(table, key)] = row
            if len(pending) > PENDING_MAX:
                self._trim(pending)

    def _trim(self, pending: dict) -> None:
        """Drop the oldest rows beyond PENDING_MAX and count them (caller holds the lock)."""
        excess = len(pending) - PENDING_MAX
        if excess <= 0:
            return
        for old in list(pending)[:excess]:
            del pending[old]
        self.dropped += excess
        if self.metrics is not None:
            self.metrics.registry_dropped_rows.inc(excess)
        if "dropped" not in self._error_logged:
            self._error_logged.add("dropped")
            log.error("registry write buffer full; dropping the oldest rows",
                      extra={"event": "registry.rows_dropped", "path": self.path, "bound": PENDING_MAX})

    def forget_jobs(self) -> None:
        """Delete every job row (admin reset)."""
        with self._lock:
            self._pending = {k: v for k, v in self._pending.items() if k[0] != "jobs"}
            self._ops = [op for op in self._ops if op[0] != FAIL_RESTARTED][-(OPS_MAX - 1):]
            self._ops.append(("DELETE FROM jobs", None))

    def get_job(self, job_id: str) -> dict | None:
        """Read one job row (fallback for jobs evicted from memory)."""
        row = self._pending.get(("jobs", job_id))
        if row is None and self._reader is not None:
            try:
                row = self._reader.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE id=?", (job_id,)).fetchone()
            except sqlite3.Error as exc:
                self._fail(f"registry read failed: {exc}")
                row = None
        if row is None:
            return None
        keys = ("id", "tenant", "state", "model", "attempts", "worker_id", "hive_id", "created", "updated",
                "error", "history", "error_message")
        job = dict(zip(keys, row))
        job["history"] = loads(job["history"] or "[]")
        return job

    # ---- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        retry_at = 0.0
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = self._stop
            if stopping or time.monotonic() >= retry_at:
                fresh = self._conn is None
                ok = not fresh or self._reconnect()
                if ok and (self._pending or self._ops):
                    ok = self._flush()
                elif ok and fresh:
                    self._recovered()  # the probe was a successful write
                if not ok:  # start over on a fresh connection: the old one may have opened read-only
                    self._drop_connection()
                    retry_at = time.monotonic() + self.retry_interval_s
            if stopping:
                break
        self._drop_connection()

    def _reconnect(self) -> bool:
        """Open a writer connection and prove it can write (a probe write); False when it cannot."""
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._conn = self._connect_checked()
            self._probe(self._conn)
        except (OSError, sqlite3.Error) as exc:
            self._fail(f"registry unavailable at {self.path}: {exc}")
            return False
        if self._reader is None or self.error is not None:  # the reader may have been opened read-only too
            try:
                self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            except sqlite3.Error:
                pass
        return True

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _recovered(self) -> None:
        if self.error is not None:
            log.info("registry writes recovered", extra={"event": "registry.recovered", "path": self.path})
            self.error = None
            self._error_logged.clear()  # a later failure is logged again

    def _flush(self) -> bool:
        with self._lock:
            pending, self._pending = self._pending, {}
            ops, self._ops = self._ops, []
        conn = self._conn
        try:
            conn.execute("BEGIN")
            for statement, rows in ops:
                if rows is None:
                    conn.execute(statement)
                else:
                    conn.executemany(statement, rows)
            by_table: dict[str, list[tuple]] = {}
            for (table, _key), row in pending.items():
                by_table.setdefault(table, []).append(row)
            for table, rows in by_table.items():
                conn.executemany(UPSERT[table], rows)
            conn.execute("COMMIT")
            self._recovered()
            return True
        except (OverflowError, ValueError, TypeError) as exc:   # a row SQLite cannot bind: drop it, keep the rest
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            dropped = self._write_each(ops, pending)
            self._fail(f"registry dropped {dropped} unwritable row(s) ({self.path}): {exc}")
            return True
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._fail(f"registry write failed ({self.path}): {exc}")
            with self._lock:  # keep the rows for the next attempt, newer values winning
                pending.update(self._pending)
                self._pending = pending
                self._trim(pending)
                self._ops = (ops + self._ops)[-OPS_MAX:]
            return False

    def _write_each(self, ops: list, pending: dict) -> int:
        """Write statements and rows one at a time, skipping those SQLite cannot bind; returns how many it skipped."""
        conn, dropped = self._conn, 0
        conn.execute("BEGIN")
        items = [(st, r) for st, rows in ops for r in ([None] if rows is None else rows)]
        items += [(UPSERT[table], row) for (table, _key), row in pending.items()]
        for statement, row in items:
            try:
                conn.execute(statement) if row is None else conn.execute(statement, row)
            except (OverflowError, ValueError, TypeError, sqlite3.InterfaceError):
                dropped += 1
        conn.execute("COMMIT")
        return dropped

    def _fail(self, message: str) -> None:
        if self.metrics is not None:
            self.metrics.registry_errors.inc()
        self.error = message
        kind = message.split(":")[0]
        if kind not in self._error_logged:
            self._error_logged.add(kind)
            log.error(message, extra={"event": "registry.error", "path": self.path})

    def flush_now(self, timeout_s: float = 2.0) -> None:
        """Ask the writer to flush and wait until the queue is empty (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        while (self._pending or self._ops) and time.monotonic() < deadline and self._conn is not None:
            time.sleep(0.005)
            self._wake.set()

    def close(self) -> None:
        """Flush what is queued and stop the writer thread."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._reader is not None:
            self._reader.close()
