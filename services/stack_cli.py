"""`python -m services.stack`: start the local stack (orchestrator, hives, workers as processes), print how to
reach it, report a service that exits, and stop everything on Ctrl-C or SIGTERM."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from services.stack import LocalStack, StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.stack", description="Start the local Apiary stack as processes; Ctrl-C stops it.")
    parser.add_argument("--hives", type=int, default=2)
    parser.add_argument("--workers-per-hive", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="also print one machine-readable JSON line")
    parser.add_argument("--workdir", help="data and logs here (default: a temp dir, removed on exit)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) on exit")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)

    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum, _frame) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = LocalStack(args.hives, args.workers_per_hive, workdir=args.workdir, keep=args.keep)
    t0 = time.monotonic()
    try:
        stack.start(args.timeout, cancel=stop)  # stops what started when it raises
    except StackError as exc:
        print(f"stack failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"apiary stack ready in {time.monotonic() - t0:.1f}s: {len(stack.hive_ids)} hives, "
          f"{len(stack.worker_ids)} workers")
    print(f"API      {stack.api_url}")
    print(f"key      {stack.key}   (admin: {stack.admin_key})")
    print(f"events   {stack.events_url}")
    print(f"logs     {stack.workdir / 'logs'}")
    print(f"try      curl -s {stack.api_url}/v1/completions -H 'Authorization: Bearer {stack.key}' "
          f"-H 'Content-Type: application/json' -d '{{\"model\":\"tinyllama\",\"prompt\":\"hello\",\"max_tokens\":5}}'")
    if args.json:
        print(json.dumps(stack.describe()))
    print("Ctrl-C to stop", flush=True)
    reported: set[str] = set()
    while not stop.wait(0.5):
        for name, proc in stack.procs.items():
            if proc.poll() is not None and name not in reported:
                reported.add(name)
                print(f"{name} exited with {proc.returncode} (see {stack.log_path(name)})", file=sys.stderr, flush=True)
    killed = stack.stop()
    print(f"stopped ({received[0] if received else 'stop'})" + (f"; killed after grace: {', '.join(killed)}" if killed else ""))
    return 0
