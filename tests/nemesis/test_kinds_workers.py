"""The `extra-workers` kind against a fake engine (apply, verify held, heal, verify no longer held; verify
fails when the workers never register or their containers exit; heal reports what it could not remove),
and the FaultBook scenarios apply kinds through: start/stop ops in the player's shape, background verify,
each fault healed exactly once, the network verbs (partition, one-way drop, loss) over it."""
import re
import threading
from types import SimpleNamespace

import pytest
import requests

from harness.errors import NemesisError
from harness.history import History
from apiary_suite import kinds_workers
from harness.nemesis.audit import FaultBook, FaultLog
from apiary_suite.network_faults import NetworkNemesis
from harness.nemesis.protocol import CHAIN, ActiveFault, FaultKind, lookup
from tests.nemesis.fakes import FakeStack

QUICK = 0.2
REAL_GET_WORKERS = kinds_workers.get_workers   # before the autouse fixture replaces it


class FakeContainer:
    """A docker SDK container as the extra workers see it."""

    def __init__(self, engine, name, env, labels):
        self.engine, self.name, self.env, self.labels = engine, name, env, labels
        self.status = "exited" if "run" in engine.ignore else "running"
        self.attrs = {"State": {"ExitCode": 1 if self.status == "exited" else 0}}

    def reload(self):
        if self.name not in self.engine.containers:
            raise RuntimeError(f'404 Client Error: Not Found ("No such container: {self.name}")')

    def stop(self, timeout=10):
        self.status = "exited"

    def remove(self, force=False):
        if "remove" in self.engine.ignore:
            raise RuntimeError("500 Server Error: device or resource busy")
        self.engine.containers.pop(self.name, None)


class WorkerStack(FakeStack):
    """The fake stack plus the engine surface ExtraWorkers uses and an orchestrator's /v1/workers."""

    def __init__(self, ignore=(), fail_starts=0):
        super().__init__()
        self.ignore = set(ignore)      # "run": containers exit at once; "register": never listed; "remove"
        self.fail_starts = fail_starts
        self.containers: dict[str, FakeContainer] = {}
        self.project = "fake"
        self.api_url = "http://127.0.0.1:1"
        self.api_keys = {"admin": "key-admin"}
        self.client = SimpleNamespace(containers=SimpleNamespace(run=self._run))
        self.lock = threading.Lock()

    def container(self, service):
        return SimpleNamespace(image=SimpleNamespace(id="sha256:worker"),
                               attrs={"Config": {"Env": ["APIARY_HIVE_ADDR=tcp://hive-a:5556", "APIARY_WORKER_ID=" + service,
                                                         "APIARY_TOKENS_PER_S=20", "PATH=/usr/bin"]}})

    def _run(self, image, detach, environment, network, hostname, name, mem_limit, memswap_limit, labels):
        with self.lock:
            if self.fail_starts:
                self.fail_starts -= 1
                raise RuntimeError("409 Conflict: name in use")
            self.calls.append(("run", network, environment["APIARY_WORKER_ID"], environment["APIARY_HIVE_ADDR"]))
            c = FakeContainer(self, name, environment, labels)
            self.containers[name] = c
            return c

    def workers(self) -> dict:
        listed = [{"id": c.env["APIARY_WORKER_ID"], "state": "ready"} for c in self.containers.values()
                  if "register" not in self.ignore]      # the orchestrator notices a dead worker only later
        return {"workers": [{"id": "worker-a1", "state": "ready"}] + listed}


@pytest.fixture(autouse=True)
def fake_registry(monkeypatch):
    """GET /v1/workers answers from the test's fake stack."""
    monkeypatch.setattr(kinds_workers, "get_workers", lambda stack, timeout_s=2.0: stack.workers())


def test_extra_workers_join_verify_heal():
    stack = WorkerStack()
    fault = lookup("extra-workers").apply(stack, "hive-b", count=3)
    assert len(fault.worker_ids) == 3 and len(set(fault.worker_ids)) == 3
    assert {c[1] for c in stack.calls if c[0] == "run"} == {"fake_hive-b-net"}
    assert {c[3] for c in stack.calls if c[0] == "run"} == {"tcp://hive-b:5556"}
    assert all(c.labels["io.apiary.run-id"] == "fake" for c in stack.containers.values())
    verdict = fault.verify()
    assert verdict["held"] is True, verdict
    assert verdict["evidence"]["unregistered"] == [] and verdict["evidence"]["not_running"] == []
    assert fault.heal() == [] and stack.containers == {}
    fault.params["verify_timeout_s"] = QUICK
    after = fault.verify()
    assert after["held"] is False and sorted(after["evidence"]["unregistered"]) == sorted(fault.worker_ids)
    assert fault.heal() == []     # idempotent


def test_verify_fails_when_the_workers_never_register():
    stack = WorkerStack(ignore={"register"})
    fault = lookup("extra-workers").apply(stack, "hive-a", count=2, verify_timeout_s=QUICK)
    verdict = fault.verify()
    assert verdict["held"] is False and sorted(verdict["evidence"]["unregistered"]) == sorted(fault.worker_ids)
    assert fault.heal() == []


def test_verify_fails_when_the_containers_exit():
    stack = WorkerStack(ignore={"run"})
    fault = lookup("extra-workers").apply(stack, "hive-a", count=2, verify_timeout_s=QUICK)
    verdict = fault.verify()
    assert verdict["held"] is False and len(verdict["evidence"]["not_running"]) == 2
    assert fault.heal() == []


def test_verify_without_an_admin_key_does_not_hold(monkeypatch):
    monkeypatch.setattr(kinds_workers, "get_workers", REAL_GET_WORKERS)
    stack = WorkerStack()
    stack.api_keys = {"tenant-a": "key-a"}
    fault = lookup("extra-workers").apply(stack, "hive-a", count=1, verify_timeout_s=QUICK)
    verdict = fault.verify()
    assert verdict["held"] is False and "admin API key" in verdict["evidence"]["error"]
    fault.heal()


def test_get_workers_sends_the_admin_key(monkeypatch):
    seen = {}

    def fake_get(url, headers, timeout):
        seen.update(url=url, headers=headers)
        return SimpleNamespace(raise_for_status=lambda: None, json=lambda: {"workers": []})
    monkeypatch.setattr(requests, "get", fake_get)
    assert REAL_GET_WORKERS(WorkerStack()) == {"workers": []}
    assert seen == {"url": "http://127.0.0.1:1/v1/workers", "headers": {"Authorization": "Bearer key-admin"}}


def test_heal_reports_what_it_could_not_remove_and_retries():
    stack = WorkerStack(ignore={"remove"})
    fault = lookup("extra-workers").apply(stack, "hive-a", count=2)
    left = fault.heal()
    assert len(left) == 2 and all("extra worker" in x for x in left)
    stack.ignore.discard("remove")
    assert fault.heal() == [] and stack.containers == {}


def test_a_failed_start_removes_the_started_ones_and_raises():
    stack = WorkerStack(fail_starts=1)
    with pytest.raises(NemesisError, match="could not start 1 of 3"):
        lookup("extra-workers").apply(stack, "hive-a", count=3)
    assert stack.containers == {}


@pytest.mark.parametrize("params", [{"count": 0}, {"count": 1.5}, {"count": True}, {"count": 33}, {"colour": "red"},
                                    {"verify_timeout_s": -1}])
def test_bad_params_are_rejected_naming_them(params):
    with pytest.raises(NemesisError) as err:
        lookup("extra-workers").apply(WorkerStack(), "hive-a", **params)
    assert next(iter(params)) in str(err.value)


@pytest.mark.parametrize("target", ["worker-a1", "orchestrator", "hive-c", "hive-a|worker-a1"])
def test_only_hives_are_targets(target):
    with pytest.raises(NemesisError, match="not accepted"):
        lookup("extra-workers").apply(WorkerStack(), target)


def test_no_targets_without_containers():
    stack = WorkerStack()
    stack.backend = "local"
    assert lookup("extra-workers").targets(stack) == []
    assert lookup("extra-workers").targets(WorkerStack()) == ["hive-a", "hive-b"]


# ---- the FaultBook ------------------------------------------------------------------------------------
def book_of(stack):
    return FaultBook(stack, FaultLog(History()))


def nemesis_ops(book, f=None):
    return [op for op in book.log.history.ops if op["process"] == "nemesis" and (f is None or op["f"] == f)]


def test_book_records_start_and_stop_in_the_players_shape_and_heals_once():
    stack = WorkerStack()
    book = book_of(stack)
    fault = book.apply("extra-workers", "hive-a", count=2)
    assert book.wait_verified(fault)["held"] is True
    start = nemesis_ops(book, "start")
    assert start[0]["type"] == "invoke" and start[0]["value"] == {"kind": "extra-workers", "target": "hive-a",
                                                                  "params": {"count": 2}, "index": 0}
    assert start[1]["type"] == "ok" and start[1]["value"]["verified"] is True and start[1]["value"]["apply_ms"] >= 0
    assert book.heal() == [] and book.heal() == [] and book.entries() == []
    stop = nemesis_ops(book, "stop")
    assert [op["type"] for op in stop] == ["invoke", "ok"], "healed exactly once"
    assert stop[0]["value"] == {"kind": "extra-workers", "target": "hive-a", "index": 0}


def test_book_records_an_unverified_fault_as_not_verified():
    book = book_of(WorkerStack(ignore={"register"}))
    fault = book.apply("extra-workers", "hive-a", count=1, verify_timeout_s=QUICK)
    assert book.wait_verified(fault)["held"] is False
    assert nemesis_ops(book, "start")[1]["value"]["verified"] is False
    assert book.heal() == []


def test_book_records_a_failed_apply_and_raises():
    book = book_of(WorkerStack())
    with pytest.raises(NemesisError):
        book.apply("extra-workers", "worker-a1", count=1)
    with pytest.raises(NemesisError, match="unknown fault kind"):
        book.apply("meteor", "hive-a")
    ops = nemesis_ops(book, "start")
    assert [op["type"] for op in ops] == ["invoke", "fail", "invoke", "fail"] and ops[1]["value"]["verified"] is False
    assert book.entries() == [] and book.heal() == [] and nemesis_ops(book, "stop") == []


def test_book_keeps_an_unhealed_fault_and_heals_it_on_the_next_heal():
    stack = WorkerStack(ignore={"remove"})
    book = book_of(stack)
    book.apply("extra-workers", "hive-a", count=1, background=False)
    assert book.heal() != [] and len(book.entries()) == 1
    stack.ignore.discard("remove")
    assert book.heal() == [] and book.entries() == []
    assert [op["type"] for op in nemesis_ops(book, "stop")] == ["invoke", "fail", "invoke", "ok"]


def test_book_heals_only_the_faults_asked_for_newest_first():
    stack = FakeStack()
    book = book_of(stack)
    cut = book.apply("partition", "hive-a|worker-a1")
    pause = book.apply("pause", "worker-b2")
    drop = book.apply("partition", "hive-b|orchestrator", direction="a->b")
    assert book.heal([drop, cut]) == []
    assert [e.fault for e in book.entries()] == [pause]
    assert [op["value"]["index"] for op in nemesis_ops(book, "stop") if op["type"] == "invoke"] == [2, 0]
    assert book.heal() == [] and stack.state["worker-b2"]["status"] == "running"


class Gated(ActiveFault):
    """A fault whose verify blocks until the test opens the gate; heal records when it ran."""

    def check(self):
        self.stack["gate"].wait(5)
        return not self.stack["healed"], {"healed_before_verify": self.stack["healed"]}

    def undo(self):
        self.stack["healed"] = True
        return []


class GatedKind(FaultKind):
    name = "gated"

    def targets(self, stack):
        return ["x"]

    def apply(self, stack, target, **params):
        return Gated(self.name, target, params, stack)


def test_a_heal_waits_for_the_background_verify():
    stack = {"gate": threading.Event(), "healed": False}
    book = FaultBook(stack, FaultLog(History()), lookup=lambda name: GatedKind())
    fault = book.apply("gated", "x")
    healer = threading.Thread(target=book.heal)
    healer.start()
    healer.join(0.2)
    assert healer.is_alive() and not stack["healed"], "heal ran before verify finished"
    stack["gate"].set()
    healer.join(5)
    assert stack["healed"] and book.wait_verified(fault) is None, "healed: no longer in the book"
    ok = [op for op in nemesis_ops(book, "start") if op["type"] == "ok"]
    assert ok[0]["value"]["verified"] is True and ok[0]["value"]["evidence"] == {"healed_before_verify": False}


# ---- the network verbs over the book -------------------------------------------------------------------
def test_network_verbs_apply_registry_kinds_in_the_one_chain_and_heal():
    stack = FakeStack()
    net = NetworkNemesis(book_of(stack))
    net.partition("orchestrator", "hive-a")
    net.drop("hive-b", "orchestrator")           # the orchestrator has no NET_ADMIN: the rule lives in hive-b
    net.loss("worker-a1", 0.1)
    assert "control" not in stack.attached["hive-a"]
    assert any(r.startswith("-d ") and "-j DROP" in r for r in stack.rules["hive-b"])
    assert any("--probability 0.1000" in r for r in stack.rules["worker-a1"])
    scripts = [c[2][2] for c in stack.calls if c[0] == "exec" and c[2][:2] == ("sh", "-c")]
    chains = set(re.findall(r"iptables -w -[NACDI] (\S+)", "\n".join(scripts)))
    assert chains == {CHAIN, "INPUT", "OUTPUT"}, f"one chain for every rule: {chains}"
    for f in net.applied:
        assert net.book.wait_verified(f)["held"] is True, f
    net.heal()
    assert stack.attached == FakeStack().attached and all(r == [] for r in stack.rules.values())
    assert net.applied == [] and net.book.entries() == []
    net.heal()                                   # nothing left: no new stop ops
    assert len([op for op in nemesis_ops(net.book, "stop") if op["type"] == "invoke"]) == 3


def test_network_heal_raises_naming_what_stayed_broken():
    stack = FakeStack(ignore={"connect"})
    net = NetworkNemesis(book_of(stack))
    net.partition("hive-b", "worker-b1")
    with pytest.raises(NemesisError, match="worker-b1 still not on hive-b-net"):
        net.heal()
    assert len(net.applied) == 1
    stack.ignore.discard("connect")
    net.heal()
    assert net.applied == []


@pytest.mark.parametrize("p", [0, -0.1, 1.5])
def test_loss_probability_out_of_range_is_rejected(p):
    with pytest.raises(NemesisError, match="probability"):
        NetworkNemesis(book_of(FakeStack())).loss("worker-a1", p)


def test_the_fault_log_keeps_the_history_it_was_given_even_when_empty():
    from apiary_suite.scenario_faults import Nemesis
    faults = History()
    assert FaultLog(faults).history is faults, "an empty History is falsy: it must still be the one recorded into"
    nemesis = Nemesis(WorkerStack(), history=faults)
    nemesis.faults.apply("extra-workers", "hive-a", count=1, background=False)
    assert [op["f"] for op in faults.ops] == ["start", "start"]
    assert nemesis.close() == [] and [op["f"] for op in faults.ops][-2:] == ["stop", "stop"]


def test_verify_reads_container_states_only_once_every_worker_is_registered(monkeypatch):
    stack = WorkerStack(ignore={"register"})
    fault = lookup("extra-workers").apply(stack, "hive-a", count=2, verify_timeout_s=QUICK)
    reloads = []
    monkeypatch.setattr(fault.extras, "states", lambda: reloads.append(1) or {})
    assert fault.verify()["evidence"]["not_running"] is None and reloads == []
    fault.heal()
