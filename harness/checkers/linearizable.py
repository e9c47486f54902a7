"""The linearizability checker for a read/write/compare-and-set register history (Wing–Gong–Lowe search, per key).

`check_register(ops)` takes Jepsen-style ops as `harness.history` records them.  Each key is checked on its
own (P-compositionality).  An ok op took effect once between its invoke and its completion.  A fail op did not
take effect and is dropped.  An info op, or an invoke that never completed, may have taken effect at any time
after its invoke, or never: its end is +infinity.  A read with an unknown outcome proves nothing and is
dropped.  Unknown writes that nobody observed are dropped, and an unknown write that alone wrote a value
someone read must end by that read (both exact: `settle_unknown`).  The search is the Wing–Gong depth-first
search with Lowe's cache, run over the time-sorted call and return entries.  A cache entry is (frontier, ops
linearized past the frontier, register value): everything that returned before the frontier is linearized, so
this pair names the linearized set exactly.  In a new configuration a pending read of the current value is
linearized first and alone: any linearization from there can move that read to the front, so its siblings need
not be tried.  The verdict follows apiary_suite.independent: False if any key cannot be linearized,
otherwise "unknown" when the time budget ran out or the checker raised, otherwise True.  It never passes by
default.
"""
from __future__ import annotations

import gc
import math
import time
from typing import Any, Iterable

from harness.checkers.linearizable_report import describe_failure

READ, WRITE, CAS, CAS_MAYBE, WRITE_MAYBE = "read", "write", "cas", "cas?", "write?"
DEFAULT_TIMEOUT_S = 60.0
MAX_CONFIGURATIONS = 1_500_000  # about 500 MB of cache: past it the verdict is "unknown"
REGISTER_FS = ("read", "write", "cas")


class RegisterOp:
    """One register operation of one key: its kind, arguments, interval and the ops it came from."""

    __slots__ = ("kind", "arg", "new", "call", "ret", "invoke", "done")

    def __init__(self, kind: str, arg: Any, new: Any, call: float, ret: float, invoke: dict, done: dict | None):
        self.kind, self.arg, self.new, self.call, self.ret = kind, arg, new, call, ret
        self.invoke, self.done = invoke, done


def freeze(value: Any) -> Any:
    """A hashable copy of a JSON value (lists become tuples, dicts sorted item tuples)."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    return value


def register_ops(ops: Iterable[dict]) -> tuple[dict[Any, list[RegisterOp]], dict[str, int]]:
    """Pair invokes with completions and partition the register ops by key; count what was dropped."""
    ops = list(ops)
    invokes, done = [], {}
    for pos, op in enumerate(ops):
        if op.get("type") == "invoke":
            invokes.append((op.get("index", pos), op))
        elif "invoke_index" in op:
            done[op["invoke_index"]] = op
    by_key: dict[Any, list[RegisterOp]] = {}
    dropped = {"fail": 0, "unknown_read": 0, "not_register": 0}
    for index, inv in invokes:
        f = inv.get("f")
        if f not in REGISTER_FS:
            dropped["not_register"] += 1
            continue
        comp = done.get(index)
        outcome = comp.get("type") if comp else None
        if outcome == "fail":
            dropped["fail"] += 1
            continue
        unknown = outcome != "ok"
        if f == "read" and unknown:
            dropped["unknown_read"] += 1
            continue
        new = None
        if f == "read":
            kind, arg = READ, freeze(comp.get("value"))
        elif f == "write":
            kind, arg = (WRITE_MAYBE if unknown else WRITE), freeze(inv.get("value"))
        else:
            pair = inv.get("value")
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"cas op {index} has value {pair!r}, not [expected, new]")
            kind, arg, new = (CAS_MAYBE if unknown else CAS), freeze(pair[0]), freeze(pair[1])
        call = float(inv["time"])
        ret = math.inf if unknown else float(comp["time"])
        if ret < call:
            raise ValueError(f"op {index} completes at {ret} before its invoke at {call}")
        key = freeze(inv["key"] if "key" in inv else (comp or {}).get("key"))
        by_key.setdefault(key, []).append(RegisterOp(kind, arg, new, call, ret, inv, comp))
    return by_key, dropped


def settle_unknown(ops: list[RegisterOp], initial: Any) -> tuple[list[RegisterOp], int, int]:
    """Drop the unknown-outcome writes nobody observed and bound those whose value only they wrote.

    Both are exact.  A write whose value no read returned and no cas expected is linearizable last,
    where it changes nothing, so the history is linearizable with it iff without it.  When one op is the
    only writer of a value that an ok read returned or an ok cas expected, it must have taken effect before
    that op completed.  The first such completion after its invoke becomes its end.  Returns
    (ops, dropped, bounded).
    """
    observed: dict[Any, list[float]] = {}
    writers: dict[Any, int] = {}
    for o in ops:
        if o.kind == READ or o.kind == CAS:
            observed.setdefault(o.arg, []).append(o.ret)
        elif o.kind == CAS_MAYBE:
            observed.setdefault(o.arg, []).append(math.inf)
        if o.kind != READ:
            value = o.new if o.kind in (CAS, CAS_MAYBE) else o.arg
            writers[value] = writers.get(value, 0) + 1
    kept, dropped, bounded = [], 0, 0
    for o in ops:
        if o.kind not in (WRITE_MAYBE, CAS_MAYBE):
            kept.append(o)
            continue
        value = o.new if o.kind == CAS_MAYBE else o.arg
        seen = observed.get(value)
        if not seen:
            dropped += 1
            continue
        ends = [t for t in seen if o.call <= t < math.inf]
        if writers[value] == 1 and value != initial and ends:
            o.ret, o.kind = min(ends), (CAS if o.kind == CAS_MAYBE else WRITE)
            bounded += 1
        kept.append(o)
    return kept, dropped, bounded


class Search:
    """The WGL search over one key's ops: entries in a doubly linked list, lifted and unlifted on a stack."""

    def __init__(self, ops: list[RegisterOp], initial: Any, max_configurations: int = MAX_CONFIGURATIONS):
        self.ops, self.initial, self.max_configurations = ops, initial, max_configurations
        # calls sort before returns at the same time: touching intervals count as concurrent
        entries = sorted([(o.call, 0, i) for i, o in enumerate(ops)] + [(o.ret, 1, i) for i, o in enumerate(ops)])
        m = len(entries)
        self.m, self.head = m, m
        self.is_ret = [e[1] == 1 for e in entries]
        self.op_of = [e[2] for e in entries]
        self.call_pos, self.ret_pos = [0] * len(ops), [0] * len(ops)
        for pos, (_, is_ret, i) in enumerate(entries):
            (self.ret_pos if is_ret else self.call_pos)[i] = pos
        self.nxt = [i + 1 for i in range(m)] + [0 if m else -1]   # the head (position m) leads to entry 0
        self.prv = [i - 1 for i in range(m)] + [-1]
        if m:
            self.nxt[m - 1], self.prv[0] = -1, m
        self.tried: dict[int, set] = {}   # op -> register values at which its step failed
        self.best = 0                      # the furthest frontier (entry position) any branch reached
        self.best_states: set = set()      # register values in the configurations stuck at that frontier
        self.nodes = 0

    def run(self, deadline: float) -> bool | str:
        """True (linearizable), False, or "unknown" when the deadline passed first."""
        ops, is_ret, op_of, nxt, prv = self.ops, self.is_ret, self.op_of, self.nxt, self.prv
        call_pos, ret_pos, head, m = self.call_pos, self.ret_pos, self.head, self.m
        kinds = [o.kind for o in ops]
        args = [o.arg for o in ops]
        news = [o.new for o in ops]
        tried = self.tried
        state = freeze(self.initial)
        frontier = self.first_return(head)
        extras: frozenset = frozenset()    # linearized ops whose return lies past the frontier
        self.best = frontier
        cache: set = set()
        shared: dict = {}
        stack: list = []
        entry = nxt[head]
        steps, fresh = 0, True
        while entry != -1:
            steps += 1
            if not steps & 1023 and (time.monotonic() > deadline or len(cache) > self.max_configurations):
                self.nodes = len(cache)
                return "unknown"
            forced = False
            if fresh:  # a new configuration: a pending read of the current value goes first, alone
                fresh = False
                j = entry
                while not is_ret[j]:
                    if kinds[op_of[j]] == READ and args[op_of[j]] == state:
                        entry, forced = j, True
                        break
                    j = nxt[j]
            if is_ret[entry]:
                if frontier == self.best:
                    self.best_states.add(state)
                while True:  # back to the last configuration that has a choice left
                    if not stack:
                        self.nodes = len(cache)
                        return False
                    o, entry, state, frontier, extras, was_forced = stack.pop()
                    c, r = call_pos[o], ret_pos[o]
                    p, q = prv[r], nxt[r]
                    nxt[p] = r
                    if q != -1:
                        prv[q] = r
                    p, q = prv[c], nxt[c]
                    nxt[p] = c
                    prv[q] = c
                    if not was_forced:
                        break
                entry = nxt[entry]
                continue
            o = op_of[entry]
            kind, arg = kinds[o], args[o]
            if kind == READ:
                ok, new = state == arg, state
            elif kind == WRITE or kind == WRITE_MAYBE:
                ok, new = True, arg
            elif kind == CAS:
                ok, new = state == arg, news[o]
            else:  # a cas of unknown outcome that took effect here: it swaps only if the value matches
                ok, new = True, (news[o] if state == arg else state)
            if not ok:
                seen = tried.get(o)
                if seen is None:
                    tried[o] = {state}
                else:
                    seen.add(state)
                entry = nxt[entry]
                continue
            r = ret_pos[o]
            if r == frontier:
                j = nxt[r]
                while j != -1 and not is_ret[j]:
                    j = nxt[j]
                moved = m if j == -1 else j
                ex = frozenset(x for x in extras if ret_pos[x] > moved)
            else:
                moved, ex = frontier, extras | {o}
            ex = shared.setdefault(ex, ex)  # one copy of each set: the cache holds references, not copies
            key = (moved, ex, new)
            if key in cache:  # explored already; after a forced read, this whole configuration is dead
                entry = frontier if forced else nxt[entry]
                continue
            cache.add(key)
            stack.append((o, entry, state, frontier, extras, forced))
            state, frontier, extras = new, moved, ex
            c = call_pos[o]
            p, q = prv[c], nxt[c]
            nxt[p] = q
            prv[q] = p
            p, q = prv[r], nxt[r]
            nxt[p] = q
            if q != -1:
                prv[q] = p
            if frontier > self.best:
                self.best, self.best_states = frontier, set()
            entry, fresh = nxt[head], True
        self.nodes = len(cache)
        return True

    def first_return(self, start: int) -> int:
        """The position of the first return entry after `start` in the list (m when none is left)."""
        j = self.nxt[start]
        while j != -1 and not self.is_ret[j]:
            j = self.nxt[j]
        return self.m if j == -1 else j

    def blocking_op(self) -> int:
        """The op whose completion no linearization of the ops before it could reach."""
        return self.op_of[self.best]


def check_key(key: Any, ops: list[RegisterOp], initial: Any, deadline: float,
              max_configurations: int = MAX_CONFIGURATIONS) -> dict:
    """Check one key's ops; on False, describe the op that first cannot be linearized and its window."""
    started = time.monotonic()
    unknown = sum(o.ret == math.inf for o in ops)
    kept, dropped, bounded = settle_unknown(ops, freeze(initial))
    search = Search(kept, initial, max_configurations)
    collecting = gc.isenabled()
    gc.disable()  # the cache holds millions of small tuples on a hard search: full collections only slow it
    try:
        valid = search.run(deadline)
    finally:
        if collecting:
            gc.enable()
    result: dict[str, Any] = {"valid": valid, "ops": len(ops), "unknown_outcome": unknown,
                              "unknown_unobserved_dropped": dropped, "unknown_bounded": bounded,
                              "configurations": search.nodes, "seconds": round(time.monotonic() - started, 4)}
    if valid is False:
        result["anomaly"] = describe_failure(key, search, freeze(initial))
    elif valid == "unknown":
        result["error"] = ("the time budget ran out before the search finished" if time.monotonic() > deadline
                           else f"the search grew past {max_configurations} configurations")
    return result


def check_register(ops: Iterable[dict], initial: Any = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                   max_configurations: int = MAX_CONFIGURATIONS) -> dict:
    """Judge a register history: {"valid": True | False | "unknown", "keys", "ops", "per_key", "anomalies"}."""
    started = time.monotonic()
    deadline = started + timeout_s
    out: dict[str, Any] = {"valid": "unknown", "keys": 0, "ops": 0, "per_key": {}, "anomalies": [], "dropped": {}}
    try:
        by_key, dropped = register_ops(ops)
        out.update(keys=len(by_key), ops=sum(len(v) for v in by_key.values()), dropped=dropped)
        for key, key_ops in sorted(by_key.items(), key=lambda kv: repr(kv[0])):
            if time.monotonic() > deadline:
                break  # the budget is spent: the keys left unchecked keep the verdict unknown
            result = check_key(key, key_ops, initial, deadline, max_configurations)
            out["per_key"][repr(key) if not isinstance(key, str) else key] = result
            if result["valid"] is False:
                out["anomalies"].append(result["anomaly"])
        verdicts = [r["valid"] for r in out["per_key"].values()]
        if not by_key:
            out["error"] = "the history holds no read, write or cas op: nothing was checked"
        elif False in verdicts:
            out["valid"] = False
        elif len(verdicts) == len(by_key) and all(v is True for v in verdicts):
            out["valid"] = True
        else:
            out["unchecked_keys"] = len(by_key) - len(verdicts)
    except Exception as exc:  # a checker that crashed proves nothing either way
        out["valid"] = "unknown"
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = round(time.monotonic() - started, 4)
    return out
