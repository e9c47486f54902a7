"""The anomaly a failed linearizability search reports: the op that first cannot be linearized, and its window.

The op is the one whose completion no linearization of the ops before it can reach, so the history's
shortest non-linearizable prefix ends with its completion.  The window around it holds that op, the ops
concurrent with it, the last writes that completed before it began (any of which may be the last to take
effect before it), and, for a read, the latest write of the value it read.  "linearizable_values" lists the
register values at which some linearization of the earlier ops could have placed it.
"""
from __future__ import annotations

from typing import Any

WRITERS = ("write", "write?", "cas", "cas?")


def describe_op(o: Any) -> dict:
    """The fields a reader needs to find one op in the history."""
    inv, done = o.invoke, o.done
    shown = done.get("value") if o.kind == "read" else inv.get("value")
    return {"process": inv.get("process"), "f": inv.get("f"), "type": done.get("type") if done else "open",
            "value": shown, "invoke_time": inv.get("time"),
            "complete_time": done.get("time") if done and done.get("type") == "ok" else None,
            "invoke_index": inv.get("index"), "complete_index": (done or {}).get("index")}


def written(o: Any) -> Any:
    """The value an op would leave in the register if it took effect (None for a read)."""
    return o.arg if o.kind in ("write", "write?") else (o.new if o.kind in ("cas", "cas?") else None)


def last_writes_before(ops: list, t: float) -> list[int]:
    """Writes completed before `t` that no other such write definitely follows: each may be the last effect."""
    before = [i for i, o in enumerate(ops) if o.kind in WRITERS and o.ret < t]
    if not before:
        return []
    latest_call = max(ops[i].call for i in before)
    return [i for i in before if ops[i].ret >= latest_call]


def classify(x: Any, ops: list, initial: Any) -> str:
    """stale-read, future-read or unwritten-read for a read; nonlinearizable for a write or cas."""
    if x.kind != "read":
        return "nonlinearizable"
    writers = [o for o in ops if o.kind in WRITERS and written(o) == x.arg]
    if any(o.call <= x.ret for o in writers) or x.arg == initial:
        return "stale-read"
    return "future-read" if writers else "unwritten-read"


def window_of(ops: list, x_id: int) -> list[int]:
    """The op, the ops concurrent with it, the last writes before it, and the latest write of what it read."""
    x = ops[x_id]
    chosen = {x_id}
    chosen.update(i for i, o in enumerate(ops) if o.call <= x.ret and o.ret >= x.call)
    chosen.update(last_writes_before(ops, x.call))
    if x.kind == "read":
        sources = [i for i, o in enumerate(ops) if o.kind in WRITERS and written(o) == x.arg and o.call <= x.ret]
        if sources:
            chosen.add(max(sources, key=lambda i: ops[i].call))
    return sorted(chosen, key=lambda i: (ops[i].call, i))


def describe_failure(key: Any, search: Any, initial: Any) -> dict:
    """The anomaly record of a key whose history cannot be linearized."""
    ops = search.ops
    x_id = search.blocking_op()
    x = ops[x_id]
    seen = sorted(search.tried.get(x_id, set()), key=repr)
    kind = classify(x, ops, initial)
    op = describe_op(x)
    prefix = sum(1 for o in ops if o.call <= x.ret)
    where = f"process {op['process']}'s {op['f']} [{op['invoke_time']}, {op['complete_time']}]"
    if x.kind == "read":
        detail = (f"{where} read {x.arg!r}, but a linearizable read could only have returned "
                  f"{seen or 'no value'} at that point ({kind})")
    else:
        detail = (f"{where} with value {op['value']!r} cannot take effect: the register could only hold "
                  f"{seen or 'no value'} while it ran")
    anomaly = {"kind": kind, "key": key, "op": op, "detail": detail, "linearizable_values": seen,
               "register_could_hold": sorted(search.best_states, key=repr), "prefix_ops": prefix,
               "window": [describe_op(ops[i]) for i in window_of(ops, x_id)]}
    if x.kind == "read":
        anomaly["value_read"] = x.arg
    return anomaly
