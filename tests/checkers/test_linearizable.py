"""The register linearizability checker on crafted histories, simulated registers and a brute-force reference."""
from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from bench.linearizable import inject_stale_read, simulate_register
from harness.checkers.linearizable import check_register
from harness.history import History


class Ops:
    """Builds a crafted history: each op is an invoke and (unless open) a completion at the given times."""

    def __init__(self):
        self.ops: list[dict] = []

    def add(self, process, f, value, start, end=None, outcome="ok", result=None, key=None) -> dict:
        inv = {"index": len(self.ops), "process": process, "type": "invoke", "f": f, "value": value, "time": start}
        if key is not None:
            inv["key"] = key
        self.ops.append(inv)
        if outcome != "open":
            self.ops.append({"index": len(self.ops), "process": process, "type": outcome, "f": f,
                             "value": result if f == "read" else value, "time": end, "invoke_index": inv["index"]})
        self.ops.sort(key=lambda op: op["time"])
        return inv

    def write(self, p, v, start, end=None, **kw):
        return self.add(p, "write", v, start, end, **kw)

    def read(self, p, got, start, end=None, **kw):
        return self.add(p, "read", None, start, end, result=got, **kw)

    def cas(self, p, expected, new, start, end=None, **kw):
        return self.add(p, "cas", [expected, new], start, end, **kw)

    def check(self, **kw) -> dict:
        return check_register(self.ops, **kw)


def test_a_sequential_history_is_valid():
    h = Ops()
    h.read(0, None, 0, 1)
    h.write(0, 1, 2, 3)
    h.read(1, 1, 4, 5)
    h.cas(1, 1, 2, 6, 7)
    h.read(0, 2, 8, 9)
    result = h.check()
    assert result["valid"] is True and result["anomalies"] == []
    assert result["keys"] == 1 and result["ops"] == 5


@pytest.mark.parametrize("last", [1, 2])
def test_overlapping_writes_may_take_effect_in_either_order(last):
    h = Ops()
    h.write(0, 1, 0, 5)
    h.write(1, 2, 1, 4)
    h.read(2, 3 - last, 2, 3)   # a read concurrent with both sees either
    h.read(2, last, 6, 7)
    assert h.check()["valid"] is True


def stale_history() -> Ops:
    h = Ops()
    h.write(0, 1, 0, 1)
    h.write(1, 2, 2, 3)
    h.read(2, 2, 3.5, 3.8)
    h.read(2, 1, 4, 5)          # the write of 2 completed before this read began
    h.write(0, 3, 6, 7)
    return h


def test_a_stale_read_is_caught_and_named_with_what_it_could_have_read():
    result = stale_history().check()
    assert result["valid"] is False
    (anomaly,) = result["anomalies"]
    assert anomaly["kind"] == "stale-read" and anomaly["key"] is None
    assert anomaly["op"]["process"] == 2 and anomaly["op"]["f"] == "read"
    assert (anomaly["op"]["invoke_time"], anomaly["op"]["complete_time"]) == (4, 5)
    assert anomaly["value_read"] == 1 and anomaly["linearizable_values"] == [2]
    assert anomaly["register_could_hold"] == [2]
    assert anomaly["prefix_ops"] == 4      # the write of 3 begins after the stale read: not in the prefix
    shown = [(op["process"], op["f"], op["value"]) for op in anomaly["window"]]
    assert shown == [(0, "write", 1), (1, "write", 2), (2, "read", 1)]
    assert "read 1" in anomaly["detail"] and "[2]" in anomaly["detail"]
    assert json.loads(json.dumps(result))["anomalies"][0]["window"][2]["complete_time"] == 5


def test_a_read_from_the_future_and_a_read_of_nothing_written():
    h = Ops()
    h.read(0, 5, 0, 1)
    h.write(1, 5, 2, 3)
    assert h.check()["anomalies"][0]["kind"] == "future-read"
    h = Ops()
    h.write(0, 1, 0, 1)
    h.read(1, 9, 2, 3)
    assert h.check()["anomalies"][0]["kind"] == "unwritten-read"


def test_cas_swaps_only_on_the_expected_value_and_a_failed_cas_did_not_happen():
    h = Ops()
    h.write(0, 1, 0, 1)
    h.cas(1, 1, 2, 2, 3)
    h.cas(0, 1, 7, 4, 5, outcome="fail")   # dropped: it did not take effect
    h.read(1, 2, 6, 7)
    assert h.check()["valid"] is True
    h.cas(0, 5, 6, 8, 9)                     # an ok cas whose expected value the register never held then
    result = h.check()
    assert result["valid"] is False and result["anomalies"][0]["op"]["f"] == "cas"
    assert result["anomalies"][0]["linearizable_values"] == [2]
    assert result["dropped"]["fail"] == 1


def test_an_unknown_write_that_must_have_taken_effect():
    h = Ops()
    h.write(0, 1, 0, 1)
    h.write(1, 2, 2, outcome="info", end=2.5)  # timed out: it may still take effect later
    h.read(0, 1, 3, 4)
    h.read(0, 2, 5, 6)
    assert h.check()["valid"] is True
    h.read(0, 1, 7, 8)                          # once seen, the write cannot be undone
    result = h.check()
    assert result["valid"] is False and result["per_key"]["None"]["unknown_bounded"] == 1


def test_an_unknown_write_that_must_not_have_taken_effect():
    h = Ops()
    h.write(0, 1, 0, 1)
    h.write(1, 2, 2, outcome="open")           # never completed
    h.read(0, 1, 3, 4)
    h.read(0, 1, 5, 6)
    assert h.check()["valid"] is True
    h = Ops()
    h.write(0, 1, 0, 1)
    h.read(0, 2, 2, 3)
    h.write(1, 2, 4, outcome="info", end=5)   # invoked after the read: it cannot explain it
    assert h.check()["anomalies"][0]["kind"] == "future-read"


def test_an_unknown_cas_takes_effect_only_on_its_expected_value_and_unknown_reads_are_dropped():
    h = Ops()
    h.write(0, 1, 0, 1)
    h.cas(1, 1, 2, 2, outcome="info", end=3)
    h.read(0, 9, 4, outcome="info", end=5)     # unknown outcome: proves nothing
    h.read(0, 2, 6, 7)
    result = h.check()
    assert result["valid"] is True and result["dropped"]["unknown_read"] == 1
    h = Ops()
    h.write(0, 1, 0, 1)
    h.cas(1, 3, 2, 2, outcome="info", end=3)   # the register held 1, never 3
    h.read(0, 2, 4, 5)
    assert h.check()["valid"] is False


def test_keys_are_checked_independently():
    h = Ops()
    h.write(0, 1, 0, 1, key="a")
    h.read(1, None, 2, 3, key="b")             # b was never written: the same value on a does not count
    h.write(0, 2, 4, 5, key="a")
    h.read(1, 2, 6, 7, key="a")
    h.write(2, 1, 8, 9, key="b")
    h.read(1, 1, 10, 11, key="b")
    result = h.check()
    assert result["valid"] is True and result["keys"] == 2
    h.read(2, 1, 12, 13, key="a")              # stale on a only
    result = h.check()
    assert result["valid"] is False and [a["key"] for a in result["anomalies"]] == ["a"]
    assert result["per_key"]["a"]["valid"] is False and result["per_key"]["b"]["valid"] is True


def test_a_spent_time_budget_gives_unknown_never_a_pass():
    ops = simulate_register(3000, seed=5, keys=3)
    result = check_register(ops, timeout_s=0.0)
    assert result["valid"] == "unknown" and result["anomalies"] == [] and result["unchecked_keys"] == 3
    assert check_register(ops)["valid"] is True


def hard_history(unknown: int) -> Ops:
    """Unknown writes of 1 and 2 (not settled: each value has many writers), reads of both, then of 3."""
    h = Ops()
    for n in range(unknown):
        h.write(n, 1 + n % 2, n * 0.01, outcome="info", end=100 + n)
    for n in range(6):
        h.read(unknown, 1 + n % 2, 1 + n, 1.5 + n)
    h.read(unknown, 3, 10, 11)                # nothing wrote 3: every subset of unknown writes is tried
    return h


def test_the_budget_ends_a_search_that_cannot_finish_and_so_does_the_configuration_cap():
    result = hard_history(30).check(timeout_s=0.5)
    assert result["valid"] == "unknown" and "time budget" in result["per_key"]["None"]["error"]
    assert result["seconds"] < 1.5
    result = hard_history(30).check(max_configurations=5000)
    assert result["valid"] == "unknown" and "5000 configurations" in result["per_key"]["None"]["error"]
    assert hard_history(4).check()["valid"] is False   # the same shape, small enough to finish


def test_unobserved_unknown_writes_are_dropped_so_a_stale_read_is_still_found_at_once():
    h = Ops()
    for n in range(40):                        # 40 timeouts whose values nobody read
        h.write(n, 100 + n, n * 0.01, outcome="info", end=50)
    h.write(40, 1, 1, 2)
    h.write(41, 2, 3, 4)
    h.read(42, 1, 5, 6)
    result = h.check(timeout_s=5)
    assert result["valid"] is False and result["anomalies"][0]["kind"] == "stale-read"
    assert result["per_key"]["None"]["unknown_unobserved_dropped"] == 40 and result["seconds"] < 1


def test_a_malformed_history_gives_unknown():
    h = Ops()
    h.add(0, "cas", 5, 0, 1)                    # a cas value must be [expected, new]
    result = h.check()
    assert result["valid"] == "unknown" and "ValueError" in result["error"]
    h = Ops()
    h.write(0, 1, 5, 4)                         # completes before its invoke
    assert h.check()["valid"] == "unknown"


def test_an_empty_history_or_one_without_register_ops_is_unknown():
    assert check_register([])["valid"] == "unknown"
    h = Ops()
    h.add("nemesis", "start", {"kind": "partition"}, 0, 1, outcome="info")
    assert h.check()["valid"] == "unknown"
    h.write(0, 4, 2, outcome="info", end=3)     # only an unobserved unknown write: nothing to contradict
    assert h.check()["valid"] is True


def test_a_history_recorded_by_history_is_read_as_is():
    history = History()
    w = history.invoke(0, "write", 7, key="k")
    history.complete(w, "ok", 7)
    nemesis = history.invoke("nemesis", "start", {"kind": "partition"})
    history.complete(nemesis, "info")
    r = history.invoke(1, "read", None, key="k")
    history.complete(r, "ok", 7)
    result = check_register(history.ops)
    assert result["valid"] is True and result["dropped"]["not_register"] == 1
    r = history.invoke(1, "read", None, key="k")
    history.complete(r, "ok", None)            # the key's value vanished
    assert check_register(history.ops)["anomalies"][0]["kind"] == "stale-read"


@pytest.mark.parametrize("seed", range(8))
def test_simulated_linearizable_registers_check_valid_and_a_mutated_read_does_not(seed):
    ops = simulate_register(400, clients=random.Random(seed).randint(2, 6), seed=seed, keys=1 + seed % 3,
                            info_ratio=0.05, fail_ratio=0.05)
    assert check_register(ops)["valid"] is True
    reads = [op for op in ops if op["type"] == "ok" and op["f"] == "read"]
    mutated = random.Random(seed).choice(reads)
    mutated["value"] = "never-written"
    result = check_register(ops)
    assert result["valid"] is False
    (anomaly,) = result["anomalies"]
    assert anomaly["kind"] == "unwritten-read" and anomaly["op"]["complete_index"] == mutated["index"]


def test_an_injected_stale_read_in_a_long_history_is_found():
    ops = simulate_register(2000, seed=3)
    done = inject_stale_read(ops)
    (anomaly,) = check_register(ops)["anomalies"]
    assert anomaly["kind"] == "stale-read" and anomaly["op"]["complete_index"] == done["index"]
    assert done["value"] not in anomaly["linearizable_values"]


def brute_force(ops: list[dict], initial=None) -> bool:
    """Reference: try every subset of unknown-outcome writes and every order allowed by real time."""
    done = {op["invoke_index"]: op for op in ops if op["type"] != "invoke"}
    items = []
    for inv in (op for op in ops if op["type"] == "invoke"):
        comp = done.get(inv["index"])
        outcome = comp["type"] if comp else "info"
        if outcome == "fail" or (inv["f"] == "read" and outcome != "ok"):
            continue
        end = comp["time"] if outcome == "ok" else math.inf
        items.append((inv["f"], inv["value"] if inv["f"] != "read" else comp["value"], inv["time"], end))
    required = [i for i, it in enumerate(items) if it[3] != math.inf]
    optional = [i for i, it in enumerate(items) if it[3] == math.inf]

    def step(state, item):
        f, v = item[0], item[1]
        if f == "read":
            return (True, state) if state == v else (False, None)
        if f == "write":
            return True, v
        return (True, v[1]) if state == v[0] else (item[3] == math.inf, state)

    def orderable(left: frozenset, state) -> bool:
        if not left:
            return True
        for i in left:
            if any(items[j][3] < items[i][2] for j in left if j != i):
                continue
            ok, new = step(state, items[i])
            if ok and orderable(left - {i}, new):
                return True
        return False

    subsets = itertools.chain.from_iterable(itertools.combinations(optional, k) for k in range(len(optional) + 1))
    return any(orderable(frozenset(required) | frozenset(s), initial) for s in subsets)


def random_history(rng: random.Random) -> list[dict]:
    """A small random history over values 1..3 with overlapping ops, often not linearizable."""
    h = Ops()
    clock = [0.0] * 3
    for _ in range(rng.randint(3, 8)):
        p = rng.randrange(3)
        start = clock[p] + rng.choice([0, 0.5, 1])
        end = start + rng.choice([0.5, 1, 2, 3])
        clock[p] = end
        outcome = rng.choices(["ok", "info", "fail", "open"], [8, 2, 1, 1])[0]
        f = rng.choice(["read", "write", "cas"])
        if f == "read":
            h.read(p, rng.choice([None, 1, 2, 3]), start, end, outcome=outcome)
        elif f == "write":
            h.write(p, rng.randint(1, 3), start, end, outcome=outcome)
        else:
            h.cas(p, rng.choice([None, 1, 2, 3]), rng.randint(1, 3), start, end, outcome=outcome)
    return h.ops


def test_the_search_agrees_with_a_brute_force_reference_on_small_random_histories():
    rng = random.Random(13)
    verdicts = []
    for _ in range(1500):
        ops = random_history(rng)
        expected = brute_force(ops)
        assert check_register(ops)["valid"] is expected, ops
        verdicts.append(expected)
    assert 150 < sum(verdicts) < 1350   # both verdicts were exercised
