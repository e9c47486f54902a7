"""Transport benchmark: raw pyzmq / raw os.pipe next to Apiary's transports, in one run.

    python -m bench.transport            # full run (~2 min), writes reports/bench/transport.json
    python -m bench.transport --quick    # smaller counts, 1 repeat (smoke test)

Method (docs/zeromq.md "Measured" quotes the results):

* Throughput: sender and receiver are separate processes (fork), as in production, so each
  has its own GIL and libzmq I/O thread. The receiver times first-to-last message. PUSH/PULL
  uses the default high-water mark (1000: back-pressure, no loss); PUB/SUB uses an unlimited
  one on both sides so both variants deliver everything and the rates compare like for like.
  Apiary sockets use the default TransportOptions (monitor on) apart from linger/HWM.
* Pipes: raw = one ``os.write`` of header+payload per message and a ``BufferedReader``;
  Apiary = ``PipeTransport`` length framing (one ``os.write`` per message, batch parsing).
* Round trip: 100 B request, echo reply; REQ/REP and DEALER->ROUTER; tcp and ipc with the
  server in another process, inproc with the server in a thread of the client's process.
* Each figure is the median of --repeat runs, raw and Apiary alternating; the throughput ratio
  is the median of the per-pair Apiary/raw ratios (higher is better); every run is kept in the
  JSON with the load average at start and end (on a busy machine the spread grows a lot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

from bench.transport_peers import (MP, client, echo_server, get, inproc_pair, pipe_reader, pipe_writer, pub, pull,
                                   push, sub)

RESULT_PATH = os.path.join("reports", "bench", "transport.json")


# ---------------------------------------------------------------- throughput

def _run(procs: list) -> None:
    """Join children (bounded), killing any that hang."""
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def throughput(pattern: str, kind: str, protocol: str, size: int, n: int, ipc_dir: str) -> float:
    """Run one sender/receiver pair in two processes and return msgs/s."""
    q, done = MP.Queue(), MP.Event()
    addr = "tcp://127.0.0.1:*" if protocol == "tcp" else f"ipc://{ipc_dir}/{pattern}-{kind}.sock"
    if pattern == "pipe":
        fds = os.pipe()
        procs = [MP.Process(target=pipe_reader, args=(kind, fds, n, q)),
                 MP.Process(target=pipe_writer, args=(kind, fds, n, size))]
        for proc in procs:
            proc.start()
        os.close(fds[0])
        os.close(fds[1])
    elif pattern == "push_pull":
        procs = [MP.Process(target=pull, args=(kind, addr, n, q, done))]
        procs[0].start()
        procs.append(MP.Process(target=push, args=(kind, get(q, "PULL address"), n, size, done)))
        procs[1].start()
    else:
        procs = [MP.Process(target=pub, args=(kind, addr, n, size, q, done))]
        procs[0].start()
        procs.append(MP.Process(target=sub, args=(kind, get(q, "PUB address"), n, q, done)))
        procs[1].start()
    try:
        return get(q, f"{pattern} {kind} {protocol} rate")
    finally:
        _run(procs)


# ---------------------------------------------------------------- round-trip latency

def round_trip(pattern: str, kind: str, protocol: str, count: int, ipc_dir: str) -> tuple[float, float]:
    """Return (p50, p99) round-trip microseconds for one pattern/implementation/protocol."""
    q = MP.Queue()
    warmup = max(100, count // 10)
    if protocol == "inproc":
        procs = [MP.Process(target=inproc_pair, args=(kind, pattern, count, warmup, q))]
        procs[0].start()
    else:
        addr = "tcp://127.0.0.1:*" if protocol == "tcp" else f"ipc://{ipc_dir}/rt-{pattern}-{kind}.sock"
        procs = [MP.Process(target=echo_server, args=(kind, pattern, addr, count + warmup, q))]
        procs[0].start()
        procs.append(MP.Process(target=client, args=(kind, pattern, get(q, "server address"), count, warmup, q)))
        procs[1].start()
    try:
        return get(q, f"{pattern} {kind} {protocol} round trips")
    finally:
        _run(procs)


# ---------------------------------------------------------------- protocol codec

def protocol_rates(n: int) -> dict[str, Any]:
    """Encode+decode per second through services.protocol, and body codecs side by side."""
    try:
        from services import protocol
    except ImportError as exc:
        return {"skipped": f"services.protocol not importable: {exc}"}
    if not (hasattr(protocol, "encode") and hasattr(protocol, "decode")):
        return {"skipped": "services.protocol has no encode/decode"}
    request = {"job_id": "job-0123456789", "trace_id": "0af7651916cd43dd8448eb211c80319c",
               "worker_id": "worker-1", "model": "tinyllama", "prompt": "Say hello to the hive. " * 8,
               "max_tokens": 128, "seed": 42, "attempt": 1}
    partial = {"job_id": "job-0123456789", "attempt": 1, "seq": 17, "text": " token"}
    rows: dict[str, Any] = {}
    for name, command, body in (("REQUEST", protocol.REQUEST, request), ("PARTIAL", protocol.PARTIAL, partial)):
        encode, decode = protocol.encode, protocol.decode
        start = time.perf_counter()
        for _ in range(n):
            decode(encode(command, body))
        rows[f"protocol {name} encode+decode"] = n / (time.perf_counter() - start)
    codecs: list[tuple[str, Callable, Callable]] = [("json", lambda o: json.dumps(o).encode(), json.loads)]
    for module, dumps, loads in (("orjson", "dumps", "loads"), ("msgpack", "packb", "unpackb")):
        try:
            mod = __import__(module)
            codecs.append((module, getattr(mod, dumps), getattr(mod, loads)))
        except ImportError:
            rows[f"body codec {module}"] = "not installed"
    for label, body in (("REQUEST", request), ("PARTIAL", partial)):
        for name, dumps, loads in codecs:
            start = time.perf_counter()
            for _ in range(n):
                loads(dumps(body))
            rows[f"body codec {name} ({label} body dumps+loads)"] = n / (time.perf_counter() - start)
    return rows


# ---------------------------------------------------------------- driver

def machine_info() -> dict[str, Any]:
    """nproc, CPU model, Python, pyzmq and libzmq versions, load."""
    import zmq
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
            "loadavg_start": os.getloadavg()}


def _median(runs: list) -> Any:
    """Median of runs (element-wise for tuples)."""
    if isinstance(runs[0], tuple):
        return tuple(statistics.median(r[i] for r in runs) for i in range(len(runs[0])))
    return statistics.median(runs)


def paired(repeat: int, fn: Callable, first: tuple, *rest: Any) -> tuple[list, list]:
    """Run fn(pattern, "raw", ...) and fn(pattern, "apiary", ...) alternately repeat times; return both lists.

    Alternating, and taking the median of the per-pair ratios, keeps a change in machine load
    from favouring one side.
    """
    raw, ours = [], []
    for _ in range(repeat):
        raw.append(fn(*first, "raw", *rest))
        ours.append(fn(*first, "apiary", *rest))
    return raw, ours


def main(argv: list[str] | None = None) -> int:
    """Run every measurement, print the table and write the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one repeat")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", default=RESULT_PATH)
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    scale = 0.1 if args.quick else 1.0
    report: dict[str, Any] = {"machine": machine_info(), "repeat": repeat, "method": __doc__,
                              "throughput": [], "round_trip": [], "protocol": {}}
    ipc_dir = tempfile.mkdtemp(prefix="apiary-bench-")
    try:
        for pattern, protocols in (("push_pull", ("tcp", "ipc")), ("pub_sub", ("tcp", "ipc")), ("pipe", ("pipe",))):
            for protocol in protocols:
                for size in (100, 1024):
                    n = int((500_000 if size == 100 else 300_000) * scale)
                    if pattern == "pub_sub":
                        n //= 2
                    raw_runs, our_runs = paired(repeat, throughput, (pattern,), protocol, size, n, ipc_dir)
                    raw, ours = _median(raw_runs), _median(our_runs)
                    ratio = statistics.median(o / r for o, r in zip(our_runs, raw_runs))
                    row = {"pattern": pattern, "protocol": protocol, "size": size, "messages": n,
                           "raw_msgs_per_s": round(raw), "apiary_msgs_per_s": round(ours), "ratio": round(ratio, 3),
                           "raw_runs": [round(r) for r in raw_runs], "apiary_runs": [round(o) for o in our_runs]}
                    report["throughput"].append(row)
                    print(f"{pattern:<9} {protocol:<6} {size:>5} B  raw {raw:>10,.0f}/s  apiary {ours:>10,.0f}/s  "
                          f"ratio {ratio:5.2f}", flush=True)
        count = int(5000 * scale)
        for pattern in ("req_rep", "router_dealer"):
            for protocol in ("tcp", "ipc", "inproc"):
                raw, ours = (_median(runs) for runs in paired(repeat, round_trip, (pattern,), protocol, count, ipc_dir))
                row = {"pattern": pattern, "protocol": protocol, "round_trips": count,
                       "raw_p50_us": round(raw[0], 1), "raw_p99_us": round(raw[1], 1),
                       "apiary_p50_us": round(ours[0], 1), "apiary_p99_us": round(ours[1], 1),
                       "ratio_p50": round(ours[0] / raw[0], 3)}
                report["round_trip"].append(row)
                print(f"{pattern:<13} {protocol:<6} p50/p99 raw {raw[0]:6.1f}/{raw[1]:6.1f} us  "
                      f"apiary {ours[0]:6.1f}/{ours[1]:6.1f} us", flush=True)
        report["protocol"] = protocol_rates(int(100_000 * scale))
        for name, value in report["protocol"].items():
            shown = f"{value:,.0f}/s" if isinstance(value, float) else value
            print(f"{name:<48} {shown}", flush=True)
    finally:
        import shutil
        shutil.rmtree(ipc_dir, ignore_errors=True)
    report["machine"]["loadavg_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print_summary(report)
    print(f"wrote {args.output}")
    return 0


def print_summary(report: dict[str, Any]) -> None:
    """Print the compact table quoted in docs/zeromq.md."""
    m = report["machine"]
    print(f"\n{m['date']}  {m['nproc']} x {m['cpu_model']}  Python {m['python']}  pyzmq {m['pyzmq']}  "
          f"libzmq {m['libzmq']}  load {m['loadavg_start'][0]:.1f}->{m['loadavg_end'][0]:.1f}")
    print("| pattern | transport | size | raw msg/s | Apiary msg/s | Apiary/raw |\n|---|---|---|---|---|---|")
    for r in report["throughput"]:
        print(f"| {r['pattern']} | {r['protocol']} | {r['size']} B | {r['raw_msgs_per_s']:,} | "
              f"{r['apiary_msgs_per_s']:,} | {r['ratio']:.2f} |")
    print("\n| round trip | transport | raw p50 / p99 µs | Apiary p50 / p99 µs |\n|---|---|---|---|")
    for r in report["round_trip"]:
        print(f"| {r['pattern']} | {r['protocol']} | {r['raw_p50_us']} / {r['raw_p99_us']} | "
              f"{r['apiary_p50_us']} / {r['apiary_p99_us']} |")


if __name__ == "__main__":
    sys.exit(main())
