"""Live frame fuzzing of the local stack (`python -m bench.fuzz`): writes reports/bench/fuzz.json.

Starts services.stack.LocalStack (orchestrator + 2 hives + 4 workers on 127.0.0.1), registers two
well-behaved probe peers (a hive at the orchestrator ROUTER, a worker at hive-a's ROUTER, each serving
its own model), keeps completions for the real model and both probe models running, and sends
--frames generated messages (apiary_suite.fuzz) to the orchestrator ROUTER, then as many to hive-a's ROUTER.
Afterwards it proves: every service answers /health, completions come back with the exact text, no
log has a traceback, no service's RSS grew by more than 20 MiB, every rejection was counted by reason
(the counters' increase equals the model's expectation) and answered, and no worker ever showed a state
outside the documented ones.  Rerun a run with `--seed`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import secrets
import sys
import threading
import time
from pathlib import Path

import psutil
import zmq

from bench.common import machine_info
from bench.fuzz_models import ORCH_STATES, HiveModel, OrchestratorModel
from apiary_suite.fuzz import FrameFuzzer, FrameGenerator, decode_spec
from services import protocol as p
from services.stack import ROOT, LocalStack, StackError, http_get

REPORT = ROOT / "reports" / "bench" / "fuzz.json"
RSS_LIMIT = 20 * 1024 * 1024
PROBE_MODELS = {"orchestrator": "fuzz-probe-orch", "hive-a": "fuzz-probe-hive"}
_COUNTER = re.compile(r'^(apiary_\w+_total)\{reason="([^"]+)"\} ([0-9.e+]+)$', re.M)


class ProbePeer(threading.Thread):
    """A well-behaved hive (role "hive") or worker (role "worker") that registers once, heartbeats every
    0.1 s and answers each REQUEST with the mock model's exact tokens, while the fuzzer runs beside it."""

    def __init__(self, endpoint: str, role: str, peer_id: str, model: str, curve: "p.CurveKeys | None" = None):
        super().__init__(name=f"probe-{peer_id}", daemon=True)
        self.endpoint, self.role, self.id, self.model, self.curve = endpoint, role, peer_id, model, curve
        self.acks = self.served = self.disconnects = 0
        self.errors: list[dict] = []
        self.stop = threading.Event()

    def ready_body(self) -> dict:
        worker = {"id": self.id + "-w" if self.role == "hive" else self.id, "model": self.model,
                  "models": [self.model], "slots": 4, "free_slots": 4, "state": "ready", "session": "probe"}
        if self.role == "worker":
            return dict(worker, role="worker")
        return {"role": "hive", "id": self.id, "session": secrets.token_hex(4), "workers": [worker], "models": []}

    def run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.id.encode())
        if self.curve is not None:
            p.secure_client(sock, self.curve, "orchestrator" if self.role == "hive" else "hive")
        sock.connect(self.endpoint)
        sock.send_multipart(p.encode(p.READY, self.ready_body()))
        beat = {"free_slots": 4, "state": "ready"}
        beat = beat if self.role == "worker" else {"workers": {self.id + "-w": dict(beat, age_s=0.0)}}
        next_beat = 0.0
        try:
            while not self.stop.is_set():
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + 0.1
                    sock.send_multipart(p.encode(p.HEARTBEAT, beat))
                if sock.poll(20):
                    self.handle(sock, p.decode(sock.recv_multipart()))
            sock.send_multipart(p.encode(p.DISCONNECT, {"reason": "probe done"}))
        finally:
            sock.close(100)
            ctx.term()

    def handle(self, sock, msg: p.Message) -> None:
        """Count acks, errors and DISCONNECTs; answer REQUEST with PARTIALs and FINAL."""
        if msg.command == p.READY:
            self.acks += 1
        elif msg.command == p.DISCONNECT:
            self.disconnects += 1
            sock.send_multipart(p.encode(p.READY, self.ready_body()))
        elif msg.command == p.ERROR:
            self.errors.append(msg.body)
        elif msg.command == p.REQUEST:
            b = msg.body
            for i in range(b["max_tokens"]):
                sock.send_multipart(p.encode(p.PARTIAL, {"job_id": b["job_id"], "attempt": b["attempt"], "seq": i,
                                                         "text": p.generate_token(b["prompt"], b["seed"], i)}))
            sock.send_multipart(p.encode(p.FINAL, {"job_id": b["job_id"], "attempt": b["attempt"],
                                                   "tokens": b["max_tokens"]}))
            self.served += 1

    def report(self) -> dict:
        return {"id": self.id, "role": self.role, "acks": self.acks, "served": self.served,
                "disconnects": self.disconnects, "errors": self.errors[:5]}


def complete(stack: LocalStack, model: str, prompt: str, seed: int, max_tokens: int = 3) -> str | None:
    """POST one completion; return None when the text is exactly the mock model's, else what went wrong."""
    conn = http.client.HTTPConnection("127.0.0.1", int(stack.api_url.rsplit(":", 1)[1]), timeout=10)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps({"model": model, "prompt": prompt, "seed": seed,
                                                                 "max_tokens": max_tokens}),
                     headers={"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        status, raw = resp.status, resp.read()
        got = json.loads(raw)["choices"][0]["text"] if status == 200 else None
    except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"{model}: {type(exc).__name__}: {exc}"
    finally:
        conn.close()
    want = p.generate_text(prompt, seed, max_tokens)
    return None if got == want else f"{model}: HTTP {status} {raw[:200]!r}, wanted {want!r}"


class Traffic(threading.Thread):
    """Completions for the real model and both probe models, one after another, until stopped."""

    def __init__(self, stack: LocalStack):
        super().__init__(name="fuzz-traffic", daemon=True)
        self.stack, self.ok, self.failures, self.stop = stack, 0, [], threading.Event()

    def run(self) -> None:
        models, i = ["tinyllama", *PROBE_MODELS.values()], 0
        while not self.stop.wait(0.02):
            i += 1
            error = complete(self.stack, models[i % 3], f"fuzz traffic {i}", i)
            if error is None:
                self.ok += 1
            else:
                self.failures.append(error)


def counters(stack: LocalStack, name: str, family: str = "apiary_protocol_errors_total") -> dict[str, float]:
    """A counter family by reason (rejected frames by default), read from a service's /metrics."""
    status, text = http_get(stack.http_url(name), "/metrics")
    if status != 200:
        raise RuntimeError(f"{name} /metrics answered {status}")
    return {reason: float(value) for fam, reason, value in _COUNTER.findall(text) if fam == family}


def delta(before: dict, after: dict) -> dict[str, int]:
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(before) | set(after))
            if after.get(k, 0) != before.get(k, 0)}


class Invariants:
    """Worker tables checked about once a second while the fuzzer runs: states documented, real workers ready."""

    def __init__(self, stack: LocalStack):
        self.stack, self.checks, self.violations = stack, 0, []

    def __call__(self, _fuzzer=None) -> None:
        self.checks += 1
        _, view = http_get(self.stack.api_url, "/v1/workers", self.stack.admin_key)
        for w in view.get("workers", []) if isinstance(view, dict) else []:
            real = w.get("id") in self.stack.worker_ids
            if w.get("state") not in ORCH_STATES or (real and (w.get("state") not in ("ready", "busy")
                                                              or w.get("hive") != self.stack.hive_of(w["id"]))):
                self.violations.append({"at": "orchestrator", "worker": w})
        for hive in self.stack.hive_ids:
            _, view = http_get(self.stack.http_url(hive), "/v1/workers")
            for w in view.get("workers", []) if isinstance(view, dict) else []:
                if w.get("state") not in p.WORKER_STATES:
                    self.violations.append({"at": hive, "worker": w})
        del self.violations[20:]


def tracebacks(stack: LocalStack) -> dict[str, int]:
    """Services whose log has a traceback, with how many."""
    found = {}
    for name in stack.names:
        n = stack.log_path(name).read_text("utf-8", "replace").count("Traceback (most recent call last)")
        if n:
            found[name] = n
    return found


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen within {timeout_s:.0f} s")


def _live_fuzz(stack: LocalStack) -> list[str]:
    """Fuzz peers' workers still live anywhere (after the run every one must be lost or left)."""
    live = [w["id"] for w in http_get(stack.api_url, "/v1/workers", stack.admin_key)[1].get("workers", [])
            if w["id"].startswith("fuzz-") and w["state"] not in ("lost", "left")]
    for hive in stack.hive_ids:
        live += [f"{hive}:{w['id']}" for w in http_get(stack.http_url(hive), "/v1/workers")[1].get("workers", [])
                 if w["id"].startswith("fuzz-")]
    return live


def fuzz_endpoint(stack: LocalStack, name: str, frames: int, seed: int, invariants: Invariants,
                  failures: list[str]) -> dict:
    """Fuzz one ROUTER (the orchestrator's, or hive-a's) and compare counters and answers with the model."""
    if name == "orchestrator":
        url, role, model, keepalive, other = stack.router_url, "hive", OrchestratorModel(), {}, "hive-a"
    else:
        url, role, model, keepalive = f"tcp://127.0.0.1:{stack.ports[name]['router']}", "worker", HiveModel(), \
            {"free_slots": 1, "state": "ready"}
        other = "orchestrator"
    ids = [f"fuzz-hive-{i}" if role == "hive" else f"fuzz-hw-{i}" for i in range(4)]
    before = {n: counters(stack, n) for n in (name, other)}
    dropped = counters(stack, name, "apiary_dropped_messages_total")
    fuzzer = FrameFuzzer(url, FrameGenerator(seed, role, ids), model, keepalive, curve=stack.client_keys(),
                         server="orchestrator" if name == "orchestrator" else "hive")
    try:
        summary = fuzzer.run(frames, on_sync=invariants)
    finally:
        fuzzer.close()
    summary.update(seed=seed, counted=delta(before[name], counters(stack, name)),
                   dropped=delta(dropped, counters(stack, name, "apiary_dropped_messages_total")),
                   counted_elsewhere={other: delta(before[other], counters(stack, other))})
    if summary["counted"] != summary["expected_reasons"]:
        failures.append(f"{name}: counted {summary['counted']} != expected {summary['expected_reasons']}")
    if summary["counted_elsewhere"][other]:
        failures.append(f"fuzzing {name} made {other} count {summary['counted_elsewhere'][other]}")
    answered = {k: v for k, v in summary["replies"].items() if k != "heartbeat"}
    if answered != summary["expected_replies"]:
        failures.append(f"{name}: answers {answered} != expected {summary['expected_replies']}")
    return summary


def start_stack(keep: bool, attempts: int = 3) -> LocalStack:
    """Start the local stack; retry when a port picked as free was taken meanwhile by another process."""
    for attempt in range(attempts):
        try:
            return LocalStack(keep=keep).start()
        except StackError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def campaign(frames: int, seed: int, log=print, keep: bool = False) -> dict:
    """Fuzz the orchestrator ROUTER (seed), then hive-a's ROUTER (seed + 1), `frames` messages each; check after."""
    failures: list[str] = []
    with start_stack(keep) as stack:
        keys = stack.client_keys()
        probes = [ProbePeer(stack.router_url, "hive", "probe-hive", PROBE_MODELS["orchestrator"], keys),
                  ProbePeer(f"tcp://127.0.0.1:{stack.ports['hive-a']['router']}", "worker", "probe-worker-a",
                            PROBE_MODELS["hive-a"], keys)]
        for probe in probes:
            probe.start()
        for model in ["tinyllama", *PROBE_MODELS.values()]:
            _wait(lambda: complete(stack, model, "warm up", 1) is None, 10, f"a first exact completion of {model}")
        procs = {n: psutil.Process(stack.pid(n)) for n in stack.names}
        rss0 = {n: proc.memory_info().rss for n, proc in procs.items()}
        invariants, traffic = Invariants(stack), Traffic(stack)
        traffic.start()
        endpoints = {}
        for k, name in enumerate(("orchestrator", "hive-a")):
            log(f"fuzzing the {name} ROUTER: {frames} messages, seed {seed + k}")
            endpoints[name] = s = fuzz_endpoint(stack, name, frames, seed + k, invariants, failures)
            log(f"  {s['messages']} messages in {s['seconds']} s ({s['messages_per_s']}/s); counted {s['counted']}")
        traffic.stop.set()
        traffic.join(15)
        for probe in probes:
            probe.stop.set()
            probe.join(5)
        try:
            _wait(lambda: not _live_fuzz(stack), 5, "every fuzz worker lost or left")
        except RuntimeError as exc:
            failures.append(f"{exc}: {_live_fuzz(stack)[:10]}")
        health = {n: http_get(stack.http_url(n), "/health")[0] for n in stack.names}
        after = [complete(stack, "tinyllama", f"after fuzz {i}", 1000 + i, 5) for i in range(4)]
        rss = {n: {"before": rss0[n], "after": proc.memory_info().rss,
                   "growth_mib": round((proc.memory_info().rss - rss0[n]) / 2 ** 20, 2)} for n, proc in procs.items()}
        traces = tracebacks(stack)
        logs = str(stack.workdir / "logs") if keep else None
    failures += [f"{n} /health answered {s}" for n, s in health.items() if s != 200]
    failures += [f"completion after fuzzing: {e}" for e in after if e]
    failures += [f"completion during fuzzing: {e}" for e in traffic.failures[:5]]
    failures += [f"{n} RSS grew {r['growth_mib']} MiB" for n, r in rss.items() if r["after"] - r["before"] > RSS_LIMIT]
    failures += [f"{n} log has {c} traceback(s)" for n, c in traces.items()]
    failures += [f"worker state invariant: {v}" for v in invariants.violations[:5]]
    failures += [f"probe {pr.id}: {pr.report()}" for pr in probes
                 if pr.acks != 1 or pr.disconnects or pr.errors or not pr.served]
    return {"seed": seed, "frames_per_endpoint": frames, "endpoints": endpoints, "health": health, "rss": rss,
            "tracebacks": traces, "traffic": {"ok": traffic.ok, "failed": len(traffic.failures)},
            "completions_after": {"ok": after.count(None), "failed": [e for e in after if e]},
            "invariant_checks": invariants.checks, "invariant_violations": invariants.violations,
            "probes": [pr.report() for pr in probes], "failures": failures, "logs": logs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000, help="generated messages per endpoint")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: a fresh seed)")
    parser.add_argument("--out", default=str(REPORT))
    parser.add_argument("--keep", action="store_true", help="keep the stack's logs")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    t0 = time.monotonic()
    report = campaign(args.frames, seed, log=lambda m: print(m, file=sys.stderr, flush=True), keep=args.keep)
    report.update(seconds=round(time.monotonic() - t0, 1), machine=machine_info(),
                  rerun=f"python -m bench.fuzz --frames {args.frames} --seed {seed}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, s in report["endpoints"].items():
        print(f"{name:12} {s['messages']:>7} messages {s['seconds']:>7} s {s['messages_per_s']:>8}/s  "
              f"counted {s['counted']}")
    print("\n".join(f"FAIL {f}" for f in report["failures"]) or "all checks passed")
    print(f"report {args.out}; rerun: {report['rerun']}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
