"""A real hive with a real mock worker behind it, driven by a fake orchestrator."""
from __future__ import annotations

import pytest

from services import protocol as p
from tests.worker.fakes import WorkerProcess

from .fakes import FakeOrchestrator, HiveProcess


@pytest.fixture
def stack(tmp_path):
    orch = FakeOrchestrator()
    hive = HiveProcess(orch.addr, str(tmp_path / "models"), APIARY_MODEL_SIZE_BYTES="100000")
    worker = WorkerProcess(hive.worker_addr, worker_id="rw1", APIARY_TOKENS_PER_S="200")
    yield orch, hive, worker
    logs = worker.stop() + hive.stop()
    orch.close()
    assert "Traceback" not in logs, logs[-3000:]


def test_job_flows_through_and_shutdown_cascades(stack):
    orch, hive, worker = stack
    ident, ready = orch.register()
    listed = {w.get("worker_id") or w.get("id") for w in ready.get("workers", [])}
    if "rw1" not in listed:  # the worker registered after the hive's READY: it is announced on its own
        orch.expect(p.WORKER, where=lambda b: b["event"] == "joined" and b["worker_id"] == "rw1", timeout_s=8)
    orch.send(ident, p.REQUEST, {"job_id": "e2e", "trace_id": "t", "worker_id": "rw1", "model": "tinyllama",
                                 "prompt": "pollen", "max_tokens": 6, "seed": 9, "attempt": 1, "stream": True})
    partials, final, command = orch.collect_job("e2e", timeout_s=8)
    assert command == p.FINAL and final["tokens"] == 6
    assert [b["seq"] for b in partials] == list(range(6))
    assert "".join(b["text"] for b in partials) == p.generate_text("pollen", 9, 6)
    orch.send(ident, p.PROVISION, {"model": "extra"})
    _, cap = orch.expect(p.CAPACITY, where=lambda b: "extra" in b.get("models", []), timeout_s=8)
    assert cap["worker_id"] == "rw1"
    orch.send(ident, p.SHUTDOWN, {"grace_s": 1})
    assert orch.expect(p.WORKER, where=lambda b: b["event"] == "left", timeout_s=8)[1]["worker_id"] == "rw1"
    orch.expect(p.DISCONNECT, timeout_s=8)
    assert worker.wait_exit(5) == 0
    assert hive.proc.wait(5) == 0
