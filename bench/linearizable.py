"""Benchmark of the linearizability checker (`python -m bench.linearizable`), and the simulated register it uses.

`simulate_register` records the history of a real linearizable register: the clients' ops overlap in time, and
each op takes effect at a random point inside its own interval.  The benchmark checks, 5 times each, 10,000-op
histories from 5 clients: on one key, over 8 keys, and on one key with 5 % of the ops timing out (info), and
the two single-key ones again with one injected stale read; and, for scale, one key from 15 clients.  It
writes the median seconds and the verdicts to reports/bench/linearizable.json, with the machine.  It is not
part of the tests.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

from harness.checkers.linearizable import check_register

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "bench" / "linearizable.json"


def simulate_register(n_ops: int, clients: int = 5, seed: int = 0, keys: int = 1, read_ratio: float = 0.5,
                      cas_ratio: float = 0.15, info_ratio: float = 0.0, fail_ratio: float = 0.0,
                      initial=None) -> list[dict]:
    """A seeded Jepsen-style history of a linearizable register (unique written values), as History records it."""
    rng = random.Random(seed)
    planned = []
    clock = [rng.uniform(0.0, 0.002) for _ in range(clients)]
    for n in range(n_ops):
        c = n % clients if n < clients else min(range(clients), key=clock.__getitem__)
        call = clock[c]
        ret = call + rng.uniform(0.0005, 0.01)
        clock[c] = ret + rng.uniform(0.0, 0.002)
        roll = rng.random()
        f = "read" if roll < read_ratio else ("cas" if roll < read_ratio + cas_ratio else "write")
        outcome = "info" if rng.random() < info_ratio else ("fail" if f != "read" and rng.random() < fail_ratio
                                                           else "ok")
        planned.append({"process": c, "f": f, "key": rng.randrange(keys), "call": call, "ret": ret,
                        "at": rng.uniform(call, ret), "outcome": outcome})
    registers: dict[int, object] = {}
    written = 0
    for p in sorted(planned, key=lambda p: p["at"]):   # apply each op at its linearization point
        current = registers.get(p["key"], initial)
        if p["f"] == "read":
            p["value"], p["result"] = None, current
        elif p["f"] == "write":
            written += 1
            p["value"] = p["result"] = written
        else:
            written += 1
            expected = current if rng.random() < 0.5 else rng.randint(0, written)
            p["value"] = p["result"] = [expected, written]
            if current != expected and p["outcome"] == "ok":
                p["outcome"] = "fail"   # the compare failed: the cas did not take effect
        took_effect = p["outcome"] == "ok" or (p["outcome"] == "info" and rng.random() < 0.5)
        if took_effect and p["f"] != "read" and (p["f"] == "write" or current == p["value"][0]):
            registers[p["key"]] = p["value"] if p["f"] == "write" else p["value"][1]
    return record(planned, keyed=keys > 1)


def record(planned: list[dict], keyed: bool) -> list[dict]:
    """The planned ops as invoke and completion ops in time order, with History's indices."""
    events = []
    for n, p in enumerate(planned):
        events.append((p["call"], 0, n))
        events.append((p["ret"], 1, n))
    events.sort()
    ops, invoke_of = [], {}
    for t, is_completion, n in events:
        p = planned[n]
        op = {"index": len(ops), "process": p["process"], "f": p["f"], "time": t, "job_id": None}
        if keyed:
            op["key"] = p["key"]
        if not is_completion:
            op.update(type="invoke", value=p["value"])
            invoke_of[n] = op["index"]
        else:
            op.update(type=p["outcome"], invoke_index=invoke_of[n],
                      value=p["result"] if p["outcome"] == "ok" else None)
        ops.append(op)
    return ops


def inject_stale_read(ops: list[dict], near: float = 0.5) -> dict:
    """Make the ok read nearest `near` of the history return a value that a later completed write replaced.

    Returns the read's completion op (changed in place).  Needs unique written values, as simulated.
    """
    invokes = {op["index"]: op for op in ops if op["type"] == "invoke"}
    writes = [(invokes[op["invoke_index"]], op) for op in ops if op["type"] == "ok" and op["f"] == "write"]
    reads = [op for op in ops if op["type"] == "ok" and op["f"] == "read"]
    for done in reads[int(len(reads) * near):]:
        began = invokes[done["invoke_index"]]["time"]
        before = [(inv, comp) for inv, comp in writes if comp["time"] < began]
        for older_inv, older in reversed(before):
            if any(inv["time"] > older["time"] and comp["time"] < began for inv, comp in before):
                if done["value"] != older_inv["value"]:
                    done["value"] = older_inv["value"]
                    return done
    raise ValueError("no read in the history can be made stale")


def timed(ops: list[dict], repeat: int) -> dict:
    """Check `ops` `repeat` times: the median and every run's seconds, and the verdicts."""
    seconds, verdicts, last = [], [], None
    for _ in range(repeat):
        start = time.perf_counter()
        last = check_register(ops, timeout_s=120)
        seconds.append(round(time.perf_counter() - start, 3))
        verdicts.append(last["valid"])
    out = {"median_s": statistics.median(seconds), "runs_s": seconds, "verdicts": verdicts,
           "invoked": sum(op["type"] == "invoke" for op in ops), "checked_ops": last["ops"],
           "dropped": last["dropped"], "keys": last["keys"]}
    if last["anomalies"]:
        a = last["anomalies"][0]
        out["anomaly"] = {k: a[k] for k in ("kind", "detail", "value_read", "linearizable_values", "prefix_ops")
                          if k in a}
        out["anomaly"]["window_ops"] = len(a["window"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    histories = {"single_key": simulate_register(args.ops, args.clients, seed=args.seed),
                 "eight_keys": simulate_register(args.ops, args.clients, seed=args.seed + 1, keys=8),
                 "single_key_5pct_timeouts": simulate_register(args.ops, args.clients, seed=args.seed + 2,
                                                               info_ratio=0.05),
                 "single_key_15_clients": simulate_register(args.ops, 15, seed=args.seed + 3)}
    injected = {}
    for name in ("single_key", "single_key_5pct_timeouts"):
        stale = [dict(op) for op in histories[name]]
        injected[name + "_stale_read"] = inject_stale_read(stale)["index"]
        histories[name + "_stale_read"] = stale
    cases = {name: timed(ops, args.repeat) for name, ops in histories.items()}
    for name, index in injected.items():
        cases[name]["injected_at_index"] = index
    report = {"command": " ".join(["python -m bench.linearizable", *(argv or [])]), "seed": args.seed,
              "ops": args.ops, "clients": args.clients, "repeat": args.repeat, "read_ratio": 0.5, "cases": cases,
              "machine": {"nproc": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                          "python": platform.python_version(), "implementation": platform.python_implementation(),
                          "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(cases, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
