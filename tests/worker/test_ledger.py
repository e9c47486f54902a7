"""The worker's execution ledger (file, GET /ledger) and the deliberate-bug knob dup_final_after_reconnect."""
from __future__ import annotations

import json
import logging
import time

import pytest

from services import protocol as p
from services.mock_worker.faults import FaultError, validate_faults
from services.mock_worker.ledger import Ledger, default_path, nonce_of, prompt_sha

from .fakes import FakeHive, WorkerProcess, http, wait_until


# ---- the ledger file, in-process -------------------------------------------------------------------

def test_nonce_is_the_first_match_of_bounded_length():
    assert nonce_of("say nonce:abc_123-X then nonce:second1") == "abc_123-X"
    assert nonce_of("nonce:abcde") is None  # 5 characters: too short
    assert nonce_of("no nonce here") is None
    assert nonce_of("nonce:" + "a" * 80) == "a" * 64


def test_prompt_sha_is_16_hex_of_sha256():
    assert prompt_sha("hello") == "2cf24dba5fb0a30e"


def test_default_path_is_per_worker_and_safe():
    assert default_path("worker-a1") == "/tmp/apiary-ledger-worker-a1.jsonl"
    assert default_path("a/b c") == "/tmp/apiary-ledger-a_b_c.jsonl"
    assert default_path("worker-a1") != default_path("worker-a2")


def test_record_appends_flushed_lines_and_read_filters(tmp_path):
    path = tmp_path / "sub" / "ledger.jsonl"
    book = Ledger(str(path), "w9")
    first = book.record("start", "j1", 1, "nonce:abcdef01 hi", 0)
    lines = path.read_text().splitlines()  # flushed: visible before close
    assert len(lines) == 1 and json.loads(lines[0]) == first
    assert first["worker"] == "w9" and first["nonce"] == "abcdef01" and first["prompt_sha"] == prompt_sha(
        "nonce:abcdef01 hi") and isinstance(first["pid"], int)
    time.sleep(0.01)
    cut = time.time()
    book.record("finish", "j1", 1, "nonce:abcdef01 hi", 5)
    with open(path, "a") as fh:
        fh.write('{"worker": "w9", "event": "sta')  # a line cut short by a kill
    entries, skipped = book.read()
    assert [e["event"] for e in entries] == ["start", "finish"] and skipped == 1
    later, _ = book.read(since=cut)
    assert [e["event"] for e in later] == ["finish"] and later[0]["tokens"] == 5
    book.close()
    again = Ledger(str(path), "w9")  # a restarted worker sees what the previous process wrote
    assert len(again.read()[0]) == 2


def test_write_error_is_counted_logged_once_and_never_raised(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    errors = []
    book = Ledger(str(blocker / "ledger.jsonl"), "w9", on_error=lambda: errors.append(1))
    with caplog.at_level(logging.ERROR, logger="mock-worker"):
        book.record("start", "j1", 1, "p", 0)
        book.record("finish", "j1", 1, "p", 3)
    assert book.errors == 2 and len(errors) == 2 and book.written == 0
    assert [r.getMessage() for r in caplog.records].count("ledger write failed") == 1
    assert book.read() == ([], 0)


def test_knob_is_a_validated_boolean():
    assert validate_faults({"dup_final_after_reconnect": True}) == {"dup_final_after_reconnect": True}
    with pytest.raises(FaultError) as info:
        validate_faults({"dup_final_after_reconnect": "yes"})
    assert info.value.field == "dup_final_after_reconnect"


# ---- a real worker against the fake hive -----------------------------------------------------------

@pytest.fixture
def hive():
    h = FakeHive()
    yield h
    h.close()


@pytest.fixture
def spawn(hive, tmp_path):
    procs: list[WorkerProcess] = []

    def start(**env) -> WorkerProcess:
        env.setdefault("APIARY_LEDGER_PATH", str(tmp_path / "ledger-w1.jsonl"))
        w = WorkerProcess(hive.addr, **env)
        procs.append(w)
        return w
    yield start
    for w in procs:
        log = w.stop()
        assert "Traceback" not in log, log[-3000:]


def ledger_of(w: WorkerProcess, since: float | None = None) -> list[dict]:
    """GET /ledger of a worker and return its entries."""
    status, body = http("GET", w.url + "/ledger" + ("" if since is None else f"?since={since}"))
    assert status == 200, body
    assert body["worker"] == w.worker_id
    return body["entries"]


def test_ledger_records_start_finish_and_abort(hive, spawn):
    w = spawn(APIARY_TOKENS_PER_S="20")
    ident, _ = hive.register()
    prompt = "nonce:run-0001 a quiet meadow"
    hive.request(ident, "j1", prompt=prompt, seed=4, max_tokens=3)
    assert hive.collect_job("j1")[2] == p.FINAL
    hive.request(ident, "j2", prompt="nonce:run-0002 long", max_tokens=200, stream=True)
    hive.expect(p.PARTIAL, where=lambda b: b["job_id"] == "j2")
    hive.send(ident, p.CANCEL, {"job_id": "j2", "attempt": 1, "worker_id": "w1", "reason": "cancelled"})
    assert hive.collect_job("j2")[2] == p.ERROR
    w.wait_http()
    entries = wait_until(lambda: len(ledger_of(w)) >= 4 and ledger_of(w), 3, "the abort entry never appeared")
    assert [(e["job_id"], e["event"]) for e in entries] == [("j1", "start"), ("j1", "finish"), ("j2", "start"),
                                                            ("j2", "abort")]
    start, finish = entries[0], entries[1]
    assert start["nonce"] == finish["nonce"] == "run-0001" and finish["tokens"] == 3 and finish["attempt"] == 1
    assert finish["prompt_sha"] == prompt_sha(prompt) and start["tokens"] == 0
    assert entries[3]["nonce"] == "run-0002" and entries[3]["reason"] == "cancelled"
    assert [e["event"] for e in ledger_of(w, since=entries[2]["wall"])] == ["start", "abort"]
    assert http("GET", w.url + "/ledger?since=soon")[0] == 400


def test_ledger_survives_a_sigkill_and_restart(hive, spawn, tmp_path):
    path = str(tmp_path / "kept.jsonl")
    w = spawn(APIARY_LEDGER_PATH=path)
    ident, _ = hive.register()
    hive.request(ident, "k1", prompt="nonce:kill-0001 x", max_tokens=2)
    assert hive.collect_job("k1")[2] == p.FINAL
    w.proc.kill()
    w.wait_exit(5)
    hive.peers.clear()
    w2 = spawn(APIARY_LEDGER_PATH=path)
    w2.wait_http()
    entries = ledger_of(w2)
    assert [(e["job_id"], e["event"]) for e in entries] == [("k1", "start"), ("k1", "finish")]
    assert entries[0]["pid"] == w.proc.pid != w2.proc.pid


def test_unwritable_ledger_is_counted_and_jobs_still_run(hive, spawn, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    w = spawn(APIARY_LEDGER_PATH=str(blocker / "ledger.jsonl"))
    ident, _ = hive.register()
    hive.request(ident, "u1", max_tokens=2)
    assert hive.collect_job("u1")[2] == p.FINAL
    w.wait_http()
    status, body = http("GET", w.url + "/ledger")
    assert status == 200 and body["entries"] == [] and body["write_errors"] == 2
    assert "apiary_worker_ledger_errors_total 2.0" in http("GET", w.url + "/metrics")[1]
    log = w.stop()
    assert log.count("ledger_write_failed") == 1


def run_then_lose_hive(hive: FakeHive, w: WorkerProcess) -> tuple[bytes, dict]:
    """Finish job d1, then drop the worker's registration the way a restarted hive does; re-register it."""
    ident, _ = hive.register()
    hive.request(ident, "d1", prompt="nonce:dup-0001 bees", seed=5, max_tokens=4, attempt=2)
    _, final, command = hive.collect_job("d1")
    assert command == p.FINAL
    hive.send(ident, p.DISCONNECT, {"reason": p.NOT_REGISTERED})
    hive.peers.clear()
    hive.register()
    return ident, final


def test_dup_final_after_reconnect_runs_the_last_job_again(hive, spawn):
    w = spawn()
    w.wait_http()
    assert w.put_faults({"dup_final_after_reconnect": True}) == (200, {"dup_final_after_reconnect": True})
    ident, final = run_then_lose_hive(hive, w)
    _, again = hive.expect(p.FINAL, where=lambda b: b["job_id"] == "d1")
    assert again["attempt"] == final["attempt"] == 2 and again["text"] == final["text"]
    w.wait_http()
    finishes = wait_until(lambda: [e for e in ledger_of(w) if e["event"] == "finish"], 3, "no finish entries")
    assert [(e["job_id"], e["attempt"], e["nonce"]) for e in finishes] == [("d1", 2, "dup-0001")] * 2
    assert [e["event"] for e in ledger_of(w)] == ["start", "finish", "start", "finish"]


def test_knob_off_nothing_runs_again(hive, spawn):
    w = spawn(APIARY_FAULTS=json.dumps({"dup_final_after_reconnect": False}))
    run_then_lose_hive(hive, w)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        got = hive.recv(0.1)
        assert got is None or got[1] != p.FINAL, "a FINAL came without a job"
    w.wait_http()
    assert [e["event"] for e in ledger_of(w)] == ["start", "finish"]


def test_a_real_hive_drops_the_duplicate_final_only_the_ledger_shows_it(tmp_path):
    """What the stack does with the knob's second FINAL: the hive no longer tracks the attempt and drops it."""
    from tests.hive.fakes import FakeOrchestrator, HiveProcess

    orch = FakeOrchestrator()
    hive = HiveProcess(orch.addr, str(tmp_path / "models"), APIARY_MODEL_SIZE_BYTES="100000")
    worker = WorkerProcess(hive.worker_addr, worker_id="rw1", APIARY_HEARTBEAT_LIVENESS="4",
                           APIARY_LEDGER_PATH=str(tmp_path / "rw1.jsonl"),
                           APIARY_FAULTS=json.dumps({"dup_final_after_reconnect": True}))
    try:
        ident, ready = orch.register()
        if "rw1" not in {w.get("worker_id") or w.get("id") for w in ready.get("workers", [])}:
            orch.expect(p.WORKER, where=lambda b: b["event"] == "joined" and b["worker_id"] == "rw1", timeout_s=8)
        orch.send(ident, p.REQUEST, {"job_id": "h1", "trace_id": "t", "worker_id": "rw1", "model": "tinyllama",
                                     "prompt": "nonce:hive-0001 pollen", "max_tokens": 3, "seed": 2, "attempt": 1})
        assert orch.collect_job("h1", timeout_s=8)[2] == p.FINAL
        hive.proc.send_signal(19)  # SIGSTOP: the worker hears nothing for longer than its 0.8 s expiry
        time.sleep(1.5)
        hive.proc.send_signal(18)  # SIGCONT: the worker re-registers and runs h1 again
        worker.wait_http()
        wait_until(lambda: sum(e["event"] == "finish" for e in ledger_of(worker)) == 2, 10,
                   "the worker never ran h1 a second time")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            got = orch.recv(0.1)
            assert got is None or got[1] != p.FINAL, "the duplicate FINAL reached the orchestrator"
        assert wait_until(lambda: hive.metric("apiary_dropped_messages_total", 'reason="stale"') >= 1, 5,
                          "the hive did not count the duplicate FINAL as stale")
    finally:
        logs = worker.stop() + hive.stop()
        orch.close()
    assert "Traceback" not in logs, logs[-3000:]
