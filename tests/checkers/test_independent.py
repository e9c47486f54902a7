"""The independent soak checker on crafted histories, ledgers and lookups: valid, each anomaly, unknown; compose()."""
from __future__ import annotations

import pytest

from apiary_suite.independent import DEFAULT_PROMISES, STRICT_PROMISES, check_soak, compose
from apiary_suite.independent import is_repetition, restart_walls
from services.protocol import generate_text


class Run:
    """Builds a crafted soak: client ops (History's shape), worker ledgers and job lookups."""

    def __init__(self):
        self.ops: list[dict] = []
        self.ledgers: dict[str, list[dict]] = {"w1": [], "w2": []}
        self.lookups: dict[str, dict] = {}
        self.wall = 1000.0

    def _op(self, **op) -> dict:
        self.wall += 1.0
        op.setdefault("wall", self.wall)
        op["index"] = len(self.ops)
        self.ops.append(op)
        return op

    def request(self, nonce: str, outcome: str, job_id: str | None = None, text: str | None = None, tries: int = 0,
                stream: bool = False, key: str | None = "same", headers: bool = True, error: dict | None = None,
                max_tokens: int = 4) -> tuple[dict, dict]:
        """One client try of `nonce`: invoke then completion (outcome ok|fail|info|open)."""
        prompt = f"soak nonce:{nonce}"
        inv = self._op(process=0, type="invoke", f="complete", job_id=None,
                       value={"nonce": nonce, "prompt": prompt, "seed": 1, "max_tokens": max_tokens, "stream": stream,
                              "tenant": "tenant-a", "idempotency_key": None if key is None else f"{key}-{nonce}",
                              "try": tries})
        if outcome == "open":
            return inv, None
        if text is None and outcome == "ok":
            text = generate_text(prompt, 1, max_tokens)
        done = self._op(process=0, type=outcome, f="complete", job_id=job_id, invoke_index=inv["index"],
                        status=200 if outcome == "ok" else 502,
                        value={"text": text or "", "error": error, "headers_received": headers and job_id is not None,
                               "done": outcome == "ok"})
        return inv, done

    def run(self, worker: str, job_id: str, nonce: str | None, attempt: int = 1, finish: bool = True) -> None:
        """Ledger entries of one attempt on a worker: start, then finish (or abort)."""
        for event in ("start", "finish" if finish else "abort"):
            self.wall += 0.5
            self.ledgers[worker].append({"worker": worker, "event": event, "job_id": job_id, "attempt": attempt,
                                         "nonce": nonce, "prompt_sha": "0" * 16, "tokens": 4, "wall": self.wall,
                                         "pid": 7})

    def look(self, job_id: str, state: str = "completed", worker: str = "w1") -> None:
        self.lookups[job_id] = {"id": job_id, "state": state, "worker_id": worker,
                                "history": [{"state": "dispatched", "worker_id": worker}]}

    def check(self, promises: dict | None = None, **override) -> dict:
        args = {"ledgers": self.ledgers, "lookups": self.lookups, **override}
        return check_soak(self.ops, args["ledgers"], args["lookups"], generate_text, promises)


def kinds(result: dict) -> list[str]:
    return sorted(a["kind"] for a in result["anomalies"])


@pytest.fixture
def clean() -> Run:
    """Two requests: one ok at once, one streamed whose first try broke and whose retry replayed the same job."""
    r = Run()
    r.request("aaaaaa01", "ok", "cmpl-1")
    r.run("w1", "cmpl-1", "aaaaaa01")
    r.look("cmpl-1")
    r.request("bbbbbb02", "info", "cmpl-2", text=" the", stream=True)
    r.request("bbbbbb02", "ok", "cmpl-2", stream=True, tries=1)
    r.run("w2", "cmpl-2", "bbbbbb02")
    r.look("cmpl-2", worker="w2")
    return r


def test_clean_history_is_valid(clean):
    result = clean.check()
    assert result["valid"] is True, result["anomalies"]
    assert result["anomalies"] == [] and result["evidence"]["ledgers"] == ["w1", "w2"]
    assert result["counts"]["nonces"] == 2 and result["counts"]["tries"] == 3 and result["counts"]["finishes"] == 2


def test_retry_with_the_same_key_ok_once_is_neither_lost_nor_duplicate(clean):
    clean.request("cccccc03", "info", None, headers=False)            # refused before any header
    clean.request("cccccc03", "fail", None, error={"code": "queue_full"}, tries=1)
    clean.request("cccccc03", "ok", "cmpl-3", tries=2)
    clean.run("w1", "cmpl-3", "cccccc03")
    clean.look("cmpl-3")
    assert clean.check()["valid"] is True


def test_lost_accepted_then_no_definite_outcome(clean):
    inv, done = clean.request("dddddd04", "info", "cmpl-4", text=" the hive", stream=True)
    clean.request("dddddd04", "info", None, headers=False, tries=1)
    clean.look("cmpl-4", state="running")
    result = clean.check()
    assert result["valid"] is False and kinds(result) == ["lost"]
    lost = result["anomalies"][0]
    assert lost["nonce"] == "dddddd04" and lost["job_ids"] == ["cmpl-4"] and inv["index"] in lost["ops"]
    assert done["index"] in lost["ops"]


def test_accepted_but_failed_with_an_error_body_is_not_lost(clean):
    clean.request("eeeeee05", "fail", "cmpl-5", error={"code": "worker_lost", "message": "gone"})
    clean.look("cmpl-5", state="failed")
    assert clean.check()["valid"] is True


def test_accepted_then_terminal_at_lookup_is_not_lost(clean):
    clean.request("eeeeee06", "info", "cmpl-6")
    clean.look("cmpl-6", state="failed")
    assert clean.check()["valid"] is True


def test_duplicate_delivery_two_oks_under_two_job_ids(clean):
    clean.request("ffffff07", "ok", "cmpl-7")
    clean.request("ffffff07", "ok", "cmpl-8", tries=1)
    clean.run("w1", "cmpl-7", "ffffff07")
    clean.look("cmpl-7")
    clean.look("cmpl-8")
    result = clean.check(promises={"idempotent_reexecution": "after_orchestrator_restart"})
    assert result["valid"] is False and "duplicate-delivery" in kinds(result)
    dup = next(a for a in result["anomalies"] if a["kind"] == "duplicate-delivery")
    assert dup["job_ids"] == ["cmpl-7", "cmpl-8"] and len(dup["ops"]) == 4


def test_duplicate_delivery_a_streamed_token_twice(clean):
    prompt = "soak nonce:gggggg08"
    want = generate_text(prompt, 1, 4).split(" ")
    doubled = " ".join(want[:3] + want[2:])  # token 2 repeated
    clean.request("gggggg08", "ok", "cmpl-9", text=doubled, stream=True)
    clean.run("w1", "cmpl-9", "gggggg08")
    clean.look("cmpl-9")
    result = clean.check()
    assert kinds(result) == ["duplicate-delivery"] and "repeats tokens" in result["anomalies"][0]["detail"]


def test_wrong_text(clean):
    clean.request("hhhhhh09", "ok", "cmpl-10", text=" bees bees")
    clean.run("w1", "cmpl-10", "hhhhhh09")
    clean.look("cmpl-10")
    result = clean.check()
    assert result["valid"] is False and kinds(result) == ["wrong-text"]
    assert result["anomalies"][0]["job_ids"] == ["cmpl-10"]


def test_executed_twice_only_in_the_ledger_is_invalid(clean):
    """The deliberate bug: the client saw one clean ok, but the worker ran the same attempt to completion twice."""
    clean.run("w1", "cmpl-1", "aaaaaa01")  # dup_final_after_reconnect: same job id, same attempt, again
    result = clean.check()
    assert result["valid"] is False and kinds(result) == ["duplicate-execution"]
    dup = result["anomalies"][0]
    assert dup["nonce"] == "aaaaaa01" and dup["job_ids"] == ["cmpl-1"]
    assert [e["event"] for e in dup["ledger"]] == ["finish", "finish"] and dup["ops"]


def test_same_attempt_completed_on_two_workers_is_invalid(clean):
    clean.run("w2", "cmpl-1", "aaaaaa01")
    result = clean.check()
    assert kinds(result) == ["duplicate-execution"] and "['w1', 'w2']" in result["anomalies"][0]["detail"]


def test_two_attempts_completing_is_the_documented_promise_not_the_strict_one(clean):
    """A job whose first worker was lost may complete again on its next attempt (docs: Delivery promises)."""
    clean.run("w2", "cmpl-1", "aaaaaa01", attempt=2)
    assert clean.check(DEFAULT_PROMISES)["valid"] is True
    strict = clean.check(STRICT_PROMISES)
    assert strict["valid"] is False and kinds(strict) == ["duplicate-execution"]


def test_idempotent_retry_run_again_as_a_new_job_is_invalid(clean):
    clean.request("iiiiii10", "info", "cmpl-11", text=" the", stream=True)
    clean.run("w1", "cmpl-11", "iiiiii10")
    clean.request("iiiiii10", "ok", "cmpl-12", stream=True, tries=1)
    clean.run("w2", "cmpl-12", "iiiiii10")
    clean.look("cmpl-11")
    clean.look("cmpl-12", worker="w2")
    result = clean.check()
    assert result["valid"] is False and kinds(result) == ["duplicate-execution"]
    assert result["anomalies"][0]["job_ids"] == ["cmpl-11", "cmpl-12"]


def test_idempotent_retry_after_an_orchestrator_kill_may_run_again(clean):
    clean.request("iiiiii10", "info", "cmpl-11", text=" the", stream=True)
    clean.run("w1", "cmpl-11", "iiiiii10")
    clean._op(process="nemesis", type="invoke", f="kill", value={"target": "orchestrator", "signal": 9})
    clean.request("iiiiii10", "ok", "cmpl-12", stream=True, tries=1)
    clean.run("w2", "cmpl-12", "iiiiii10")
    clean.look("cmpl-11", state="failed")
    clean.look("cmpl-12", worker="w2")
    result = clean.check()
    assert result["valid"] is True, result["anomalies"]
    assert len(result["evidence"]["orchestrator_restarts"]) == 1
    assert clean.check(STRICT_PROMISES)["valid"] is False


def test_one_request_completed_under_two_job_ids_is_invalid(clean):
    clean.run("w2", "cmpl-99", "aaaaaa01")  # a job the client never saw ran the same nonce to completion
    result = clean.check()
    assert kinds(result) == ["duplicate-execution"] and "1 client tries" in result["anomalies"][0]["detail"]


def test_unanswerable_job_id(clean):
    clean.lookups["cmpl-1"] = {"status": 404}
    result = clean.check()
    assert result["valid"] is False and kinds(result) == ["unanswerable"]
    assert result["anomalies"][0]["job_ids"] == ["cmpl-1"]


def test_unanswerable_after_a_kill_follows_the_documented_promise(clean):
    """A row still queued (write-behind) when the orchestrator was SIGKILLed may be gone: documented, not strict."""
    inv, done = clean.request("jjjjjj11", "info", "cmpl-13", text=" the", stream=True)
    clean._op(process="nemesis", type="invoke", f="kill", value={"target": "orchestrator"}, wall=done["wall"] + 0.1)
    clean.request("jjjjjj11", "ok", "cmpl-14", stream=True, tries=1)
    clean.run("w1", "cmpl-14", "jjjjjj11")
    clean.lookups["cmpl-13"] = {"status": 404}
    clean.look("cmpl-14")
    result = clean.check()
    assert result["valid"] is True and result["counts"]["unanswerable_excused"] == 1
    assert kinds(clean.check(STRICT_PROMISES)) == ["unanswerable"]
    late = clean.check({"registry_flush_window_s": 0.0})  # a kill after the window excuses nothing
    assert kinds(late) == ["unanswerable"]


def test_missing_ledger_of_a_worker_that_ran_jobs_is_unknown(clean):
    del clean.ledgers["w2"]
    result = clean.check()
    assert result["valid"] == "unknown" and result["evidence"]["missing_ledgers"] == ["w2"]
    clean.ledgers["w2"] = None  # collected, but unreadable
    assert clean.check()["evidence"]["missing_ledgers"] == ["w2"]


@pytest.mark.parametrize("missing", ["ledgers", "lookups"])
def test_no_evidence_is_unknown(clean, missing):
    result = clean.check(**{missing: None})
    assert result["valid"] == "unknown" and any(missing[:-1] in m for m in result["evidence"]["missing"])


def test_a_ledger_with_failed_writes_or_a_job_not_looked_up_is_unknown(clean):
    clean.ledgers["w1"] = {"worker": "w1", "entries": clean.ledgers["w1"], "write_errors": 3}
    assert clean.check()["valid"] == "unknown"
    clean.ledgers["w1"]["write_errors"] = 0
    assert clean.check()["valid"] is True
    del clean.lookups["cmpl-2"]
    assert clean.check()["valid"] == "unknown"


def test_invalid_wins_over_unknown(clean):
    clean.run("w1", "cmpl-1", "aaaaaa01")
    del clean.ledgers["w2"]
    assert clean.check()["valid"] is False


def test_is_repetition():
    assert is_repetition(" a b b c", " a b c")
    assert not is_repetition(" a b c", " a b c")
    assert not is_repetition(" a x y c", " a b c")


def test_restart_walls_only_for_the_target():
    ops = [{"index": 0, "type": "invoke", "f": "kill", "value": {"target": "orchestrator"}, "wall": 5.0},
           {"index": 1, "type": "invoke", "f": "kill", "value": {"target": "worker-a1"}, "wall": 6.0},
           {"index": 2, "type": "invoke", "f": "partition", "value": {"target": "orchestrator"}, "wall": 7.0},
           {"index": 3, "type": "invoke", "f": "graceful_restart", "value": "orchestrator", "wall": 8.0},
           {"index": 4, "type": "invoke", "f": "start", "value": {"kind": "oom", "target": "orchestrator"}, "wall": 9.0},
           {"index": 5, "type": "invoke", "f": "stop", "value": {"kind": "kill", "target": "orchestrator"}, "wall": 10.0},
           {"index": 6, "type": "invoke", "f": "start", "value": {"kind": "pause", "target": "orchestrator"}, "wall": 11.0},
           {"index": 7, "type": "info", "f": "start", "value": {"kind": "kill", "target": "orchestrator"}, "wall": 12.0}]
    inf = float("inf")
    assert restart_walls(ops) == [(5.0, inf), (8.0, inf), (9.0, inf)]  # a heal (stop), a pause and a skipped kill replace nothing
    ops.append({"index": 8, "type": "ok", "f": "start", "invoke_index": 0, "wall": 5.6})
    assert restart_walls(ops)[0] == (5.0, 5.6)   # the kill took effect somewhere between invoke and done


def test_a_key_reused_after_a_kill_that_took_effect_after_the_first_try_began_is_forgiven():
    """Seen in the 30-minute soak: the kill's invoke came 0.3 s before the first try, the process died
    0.5 s later, after the first run finished; the retry ran again on the new orchestrator. That is the
    documented promise (a restart forgets idempotency keys), not a duplicate."""
    from apiary_suite.independent import overlaps
    kill = [(100.0, 100.6)]
    assert overlaps(kill, 100.3, 104.0) == (100.0, 100.6)
    assert overlaps(kill, 100.7, 104.0) is None and overlaps(kill, 98.0, 99.9) is None


# ---- compose ---------------------------------------------------------------------------------------

def test_compose_all_valid_is_valid():
    assert compose({"a": {"valid": True}, "b": lambda: {"valid": True}})["valid"] is True


def test_compose_unknown_then_invalid():
    out = compose({"a": {"valid": True}, "b": {"valid": "unknown"}})
    assert out["valid"] == "unknown" and out["unknown"] == ["b"]
    out = compose({"a": {"valid": False}, "b": {"valid": "unknown"}, "c": {"valid": True}})
    assert out["valid"] is False and out["failures"] == ["a"]


def test_compose_an_exception_is_unknown_not_a_pass():
    def broken():
        raise KeyError("nonce")
    out = compose({"a": {"valid": True}, "b": broken, "c": RuntimeError("no ledgers")})
    assert out["valid"] == "unknown" and out["unknown"] == ["b", "c"]
    assert "KeyError" in out["results"]["b"]["error"] and "no ledgers" in out["results"]["c"]["error"]


def test_compose_a_result_without_verdict_is_unknown():
    assert compose({"a": {"anomalies": []}, "b": None})["valid"] == "unknown"


def test_compose_runs_the_checker_and_keeps_its_result(clean):
    out = compose({"independent": lambda: clean.check()})
    assert out["valid"] is True and out["results"]["independent"]["counts"]["nonces"] == 2


def test_a_404_after_a_registry_corruption_is_the_documented_loss_and_strict_promises_refuse_it():
    from apiary_suite.independent import STRICT_PROMISES, check_soak
    from harness.history import History
    from services.protocol import generate_text
    h = History()
    prompt = "p nonce:abc123"
    op = h.invoke("tenant-a-1", "complete", {"nonce": "abc123", "try": 0, "prompt": prompt, "seed": 1, "max_tokens": 2,
                                             "stream": False, "tenant": "tenant-a", "idempotency_key": "abc123"})
    h.complete(op, "ok", {"text": generate_text(prompt, 1, 2), "headers_received": True, "done": True, "error": None},
               job_id="j1", tenant="tenant-a", status=200)
    h.complete(h.invoke("nemesis", "start", {"kind": "storage-corrupt", "target": "orchestrator", "index": 0}), "ok",
               {"verified": True})
    ledger = {"worker-a1": [{"worker": "worker-a1", "event": "start", "job_id": "j1", "attempt": 1, "nonce": "abc123", "wall": 1.0},
                            {"worker": "worker-a1", "event": "finish", "job_id": "j1", "attempt": 1, "nonce": "abc123", "wall": 2.0}]}
    got = check_soak(h.ops, ledger, {"j1": {"status": 404}}, generate_text)
    assert got["valid"] is True and got["counts"]["unanswerable_after_corruption"] == 1
    strict = check_soak(h.ops, ledger, {"j1": {"status": 404}}, generate_text, STRICT_PROMISES)
    assert strict["valid"] is False and [a["kind"] for a in strict["anomalies"]] == ["unanswerable"]
