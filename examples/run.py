"""Run an example topology and check that no message was lost or duplicated.

    python -m examples.run examples/zeromq_pubsub.yaml

Starts every stage the file describes (threads, or subprocesses for ``run_in: process``), binding
stages first so OS-chosen TCP ports can be handed to the others, waits (bounded by
``timeout_s``) for the source and the sinks, stops the workers, prints what each endpoint
received and exits 0 if every sink got exactly the messages it should (in order for pub_sub),
1 if a message was lost, duplicated or reordered or a stage failed, 2 on a configuration error,
130 on Ctrl-C. Every process it starts is stopped on every path, and its temp dir is removed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from services.transport import ConfigError, local_address

from . import spec as specs
from .stages import StageContext, run_stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINITE = ("source", "pipe_source", "sink")
STOP_WAIT_S = 5.0


class Board:
    """Collects ready/result/exit events from stages (threads and processes) with deadlines."""

    def __init__(self) -> None:
        """Start empty."""
        self.events: queue.Queue = queue.Queue()
        self.records: dict[str, dict[str, Any]] = collections.defaultdict(dict)

    def put(self, iid: str, kind: str, data: Any) -> None:
        """Record an event from stage instance iid."""
        self.events.put((iid, kind, data))

    def wait(self, kind: str, iids: list[str], deadline: float) -> None:
        """Block until every iid reported kind; TimeoutError naming the silent ones otherwise."""
        while missing := [i for i in iids if kind not in self.records[i]]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} from {', '.join(missing)} before the deadline")
            try:
                iid, got, data = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.records[iid][got] = data
            if got == "exit":
                for expected in ("ready", "result"):
                    self.records[iid].setdefault(expected, {"error": f"process exited with code {data} "
                                                                     f"before reporting {expected}"})


class Runner:
    """Starts, tracks and stops the stage instances of one example."""

    def __init__(self, path: str, spec: dict) -> None:
        """Prepare instances and the ipc directory."""
        self.path, self.spec = path, spec
        self.board = Board()
        self.ipc_dir = tempfile.mkdtemp(prefix="apiary-ex-")
        self.instances = {f"{s['name']}#{r}": (s, r) for s in spec["stages"] for r in range(s["replicas"])}
        self.contexts: dict[str, StageContext] = {}
        self.threads: list[threading.Thread] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.addresses = {name: ep.get("address") or local_address(ep.get("protocol", "tcp"), name,
                                                                     directory=self.ipc_dir)
                          for name, ep in spec["endpoints"].items()}

    def start(self, iid: str) -> None:
        """Start one stage instance in a thread or a subprocess."""
        stage, replica = self.instances[iid]
        if stage["run_in"] == "process":
            cmd = [sys.executable, "-m", "examples.run", self.path, "--stage", stage["name"],
                   "--replica", str(replica), "--addresses", json.dumps(self.addresses)]
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            self.procs[iid] = proc
            self._spawn_thread(self._pump, iid, proc)
            return
        ctx = StageContext(self.spec, stage, replica, dict(self.addresses),
                           lambda kind, data: self.board.put(iid, kind, data))
        self.contexts[iid] = ctx
        self._spawn_thread(run_stage, ctx)

    def _spawn_thread(self, target: Any, *args: Any) -> None:
        """Start a daemon thread and remember it."""
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _pump(self, iid: str, proc: subprocess.Popen) -> None:
        """Turn a child's READY/RESULT lines into events; echo anything else."""
        for line in proc.stdout:
            kind, _, payload = line.partition(" ")
            if kind in ("READY", "RESULT"):
                self.board.put(iid, kind.lower(), json.loads(payload))
            else:
                print(f"[{iid}] {line.rstrip()}", flush=True)
        self.board.put(iid, "exit", proc.wait())

    def run(self) -> dict[str, dict]:
        """Start binders, then everyone else; wait for the finite stages; stop the workers."""
        deadline = time.monotonic() + self.spec["timeout_s"]
        binders = {ep["bind"] for ep in self.spec["endpoints"].values()}
        first = [i for i, (s, _) in self.instances.items() if s["name"] in binders]
        for iid in first:
            self.start(iid)
        self.board.wait("ready", first, deadline)
        for iid in first:
            self.addresses.update(self.board.records[iid]["ready"])
        for iid in self.instances:
            if iid not in first:
                self.start(iid)
        self.board.wait("result", [i for i, (s, _) in self.instances.items() if s["kind"] in FINITE], deadline)
        self.stop_workers()
        workers = [i for i, (s, _) in self.instances.items() if s["kind"] not in FINITE]
        self.board.wait("result", workers, time.monotonic() + STOP_WAIT_S)
        return {iid: self.board.records[iid]["result"] for iid in self.instances}

    def stop_workers(self) -> None:
        """Ask every stage to stop (threads: stop flag; processes: SIGTERM)."""
        for ctx in self.contexts.values():
            ctx.stop.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def cleanup(self) -> bool:
        """Stop everything that is still running; return True if every thread finished."""
        self.stop_workers()
        for proc in self.procs.values():
            try:
                proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_WAIT_S)
        end = time.monotonic() + STOP_WAIT_S
        for thread in self.threads:
            thread.join(max(0.0, end - time.monotonic()))
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
        return not any(t.is_alive() for t in self.threads)


def shorten(ids: list[int], limit: int = 20) -> str:
    """Format a list of ids, truncated."""
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return f"{ids[:limit]}{more}"


def report(spec: dict, results: dict[str, dict]) -> list[str]:
    """Print one line per stage instance and return the failures."""
    failures = []
    for iid, result in results.items():
        stage = next(s for s in spec["stages"] if s["name"] == iid.rsplit("#", 1)[0])
        if "error" in result:
            failures.append(f"{iid}: {result['error']}")
            print(f"  {iid:<18} ERROR {result['error']}")
            continue
        if stage["kind"] in specs.SOURCES:
            print(f"  {iid:<18} sent {result['sent']}/{spec['messages']}")
            if result["sent"] != spec["messages"]:
                failures.append(f"{iid}: sent {result['sent']} of {spec['messages']} (dropped at the HWM)")
        elif stage["kind"] == "worker":
            print(f"  {iid:<18} forwarded {result['forwarded']}")
        else:
            failures += check_sink(spec, stage, iid, result)
    return failures


def check_sink(spec: dict, stage: dict, iid: str, result: dict) -> list[str]:
    """Compare what a sink received with what it should have received."""
    expected, ids = specs.expected_ids(spec, stage), result["ids"]
    counts = collections.Counter(ids)
    wanted = set(expected)
    missing = [i for i in expected if i not in counts]
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    unexpected = sorted(i for i in counts if i not in wanted)
    ordered = spec["endpoints"][stage["input"]].get("pattern") != "pub_sub" or ids == expected
    spread = " ".join(f"{k}={v}" for k, v in sorted(result["spread"].items()))
    print(f"  {iid:<18} received {len(ids)}/{len(expected)}: {len(missing)} missing, {len(duplicated)} duplicated, "
          f"{len(unexpected)} unexpected{'' if ordered else ', OUT OF ORDER'}" + (f"; spread {spread}" if spread else ""))
    failures = []
    if missing:
        failures.append(f"{iid}: lost {len(missing)} messages, ids {shorten(missing)}")
    if duplicated:
        failures.append(f"{iid}: duplicated ids {shorten(duplicated)}")
    if unexpected:
        failures.append(f"{iid}: received ids that do not match its filter {shorten(unexpected)}")
    if not ordered and not (missing or duplicated):
        failures.append(f"{iid}: messages arrived out of order")
    return failures


def run_example(path: str) -> int:
    """Run the example at path and return the exit code."""
    try:
        spec = specs.load(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    print(f"{spec['name']}: {spec.get('description', '').strip()}")
    runner = Runner(path, spec)
    started = time.monotonic()
    code = 1
    try:
        results = runner.run()
        failures = report(spec, results)
        took = time.monotonic() - started
        for failure in failures:
            print(f"FAIL: {failure}")
        if not failures:
            print(f"OK: every endpoint received every expected message exactly once ({took:.1f} s)")
        code = 1 if failures else 0
    except TimeoutError as exc:
        print(f"FAIL: timed out after {spec['timeout_s']} s: {exc}")
    except KeyboardInterrupt:
        print("interrupted: stopping every stage")
        code = 130
    finally:
        if not runner.cleanup():
            print("warning: a stage thread did not stop; exiting without waiting for it", file=sys.stderr)
            sys.stdout.flush()
            os._exit(code)
    return code


def run_child(path: str, name: str, replica: int, addresses: dict[str, str]) -> int:
    """Child-process entry: run one stage instance, reporting on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent runner handles Ctrl-C and stops us
    spec = specs.load(path)
    stage = next(s for s in spec["stages"] if s["name"] == name)

    def emit(kind: str, data: Any) -> None:
        print(kind.upper(), json.dumps(data), flush=True)

    ctx = StageContext(spec, stage, replica, addresses, emit)
    signal.signal(signal.SIGTERM, lambda *_: ctx.stop.set())
    run_stage(ctx)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run an example (or, with --stage, one stage of it)."""
    parser = argparse.ArgumentParser(prog="python -m examples.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("example", help="path to an examples/*.yaml file")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--replica", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        return run_child(args.example, args.stage, args.replica, json.loads(args.addresses))
    return run_example(args.example)


if __name__ == "__main__":
    sys.exit(main())
