"""A chaos soak: a seeded fault schedule (or a replayed one) played against the stack while SoakLoad drives
the HTTP API; then every fault is healed, recovery is required, the independent evidence is gathered (the
workers' own ledgers, GET /v1/jobs/{id} for every job id a client saw) and judged. Every artifact lands
in the soak's own directory: schedule.json, history.jsonl, events.jsonl, ledgers.json, lookups.json,
verdict.json, soak.json and timeline.png."""
from __future__ import annotations

import concurrent.futures as futures
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

from apiary_suite.client import ApiClient
from harness.deadline import ScenarioTimeout, ScenarioWatchdog
from apiary_suite.events import EventSubscriber
from harness.history import History
from apiary_suite.soak_judge import judge
from apiary_suite.soak_load import LoadPlan, SoakLoad

MARK_TOPICS = ("worker.lost", "worker.registered", "hive.lost", "hive.registered", "job.redispatched")
BUGS = {"dup-final": {"dup_final_after_reconnect": True}}   # deliberate bugs, for @selftest only
REVISION_ENV = "APIARY_SOAK_REVISION"   # draw (and record) schedules as if at another git revision
PLAY_SLACK_S = 120       # the play phase's watchdog: schedule + quiet tail + this, then stacks and a failed soak
HEAL_LIMIT_S = 180       # heal_all() and stopping the load: past this the soak is interrupted (stacks written)


@dataclass
class SoakSpec:
    """One soak: its seed, profile and length, or a schedule to replay; the load; an optional bug knob."""

    seed: int
    profile: str = "ci"
    duration_s: float = 60.0
    schedule: list[dict] | None = None
    plan: LoadPlan = field(default_factory=LoadPlan)
    bug: str | None = None
    name: str = "soak"
    images: dict = field(default_factory=dict)   # image ids, recorded with the schedule


def schedule_revision(revision: str) -> str:
    """The revision schedules are drawn with: $APIARY_SOAK_REVISION when set (what would another revision
    play? the self-test proves its schedule does not depend on it), else the checkout's own."""
    return os.environ.get(REVISION_ENV) or revision


def make_schedule(spec: SoakSpec, revision: str) -> tuple[list[dict], dict]:
    """The schedule to play (generated from seed + profile + revision, or the replayed one) and its meta."""
    from harness.nemesis.generator import draw
    schedule, meta = draw(spec.seed, spec.profile, spec.duration_s, revision, given=spec.schedule)
    meta.pop("faults")
    return schedule, {**meta, "replayed": spec.schedule is not None, "images": spec.images}


def worker_services(stack: Any) -> list[str]:
    return [s for s in stack.services if s.startswith("worker-")]


def set_bug(stack: Any, bug: str | None) -> None:
    """Switch a deliberate bug on in every worker (PUT /faults); off again with the stack's reset."""
    if not bug:
        return
    for w in worker_services(stack):
        resp = requests.put(stack.http_url(w).rstrip("/") + "/faults", json=BUGS[bug], timeout=5)
        assert resp.status_code == 200, f"PUT /faults {BUGS[bug]} on {w}: {resp.status_code} {resp.text[:200]}"


def read_ledgers(stack: Any, since_wall: float) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Every worker's execution ledger since a time ({worker: entries}), and the workers that could not be read."""
    ledgers, missing = {}, {}

    def one(w: str) -> None:
        try:
            resp = requests.get(stack.http_url(w).rstrip("/") + "/ledger", params={"since": since_wall}, timeout=10)
            resp.raise_for_status()
            ledgers[w] = resp.json()   # entries plus write_errors: a ledger that failed to write is no evidence
        except Exception as exc:  # noqa: BLE001 - a missing ledger makes the verdict unknown, never valid
            missing[w] = repr(exc)[:300]
    with futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(one, worker_services(stack)))
    return ledgers, missing


def look_up_jobs(stack: Any, ops: list[dict]) -> dict[str, dict]:
    """GET /v1/jobs/{id} (as the tenant that saw it) for every job id a client saw."""
    seen = {}
    for op in ops:
        if op.get("f") == "complete" and op.get("type") != "invoke" and op.get("job_id"):
            seen[op["job_id"]] = op.get("tenant") or "admin"
    keys = stack.api_keys
    local = threading.local()   # one keep-alive session per thread: a connection per look-up is 10x slower

    def one(item: tuple[str, str]) -> tuple[str, dict]:
        job_id, tenant = item
        if not hasattr(local, "session"):
            local.session = requests.Session()
        session = local.session
        error = None
        for attempt in range(3):   # a kept-alive connection the server closed is the harness's failure, not an answer
            try:
                resp = session.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10,
                                   headers={"Authorization": f"Bearer {keys.get(tenant, keys.get('admin'))}"})
                return job_id, resp.json() if resp.status_code == 200 else {"status": resp.status_code, "body": resp.text[:200]}
            except requests.RequestException as exc:
                error = {"status": None, "error": repr(exc)[:200], "tries": attempt + 1}
                session = local.session = requests.Session()
                time.sleep(0.2 * (attempt + 1))
        return job_id, error
    with futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, seen.items()))


def wait_recovered(stack: Any, client: ApiClient, limit_s: float, tag: str) -> float | None:
    """Seconds until every worker is registered again and a round of new jobs all succeed; None past the limit."""
    start = time.monotonic()
    rnd = 0
    while time.monotonic() - start < limit_s:
        try:
            ready = stack.workers_ready()
        except (requests.RequestException, ValueError):
            ready = None
        if ready:
            res = [client.complete(f"recovery {tag} nonce:{tag}r{rnd:03d}x{k}", tenant=("tenant-a", "tenant-b")[k % 2],
                                   max_tokens=3, seed=k, stream=bool(k % 2), timeout_s=5,
                                   headers={"Idempotency-Key": f"{tag}r{rnd:03d}x{k}"},
                                   annotate={"nonce": f"{tag}r{rnd:03d}x{k}", "try": 0, "phase": "recovery"})
                   for k in range(4)]
            if all(c.ok for c in res):
                return round(time.monotonic() - start, 3)
        rnd += 1
        time.sleep(0.2)
    return None


def watchdog(limit_s: float, out_dir: Path, what: str) -> ScenarioWatchdog | None:
    """A SIGALRM watchdog on a soak phase (main thread only: elsewhere the runner's own limit is the backstop)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    dog = ScenarioWatchdog(limit_s, out_dir)
    dog.arm(what)
    return dog


def stop_dog(dog: ScenarioWatchdog | None) -> None:
    if dog is not None:
        dog.disarm()


def run_soak(stack: Any, out_dir: Path, spec: SoakSpec, policy: dict, revision: str,
             say: Callable[[str], None] = print) -> dict:
    """Play one soak and judge it; returns soak.json's content (its 'passed' is the soak's verdict)."""
    from harness.nemesis.generator import schedule_json
    from harness.nemesis.player import FaultPlayer
    out_dir.mkdir(parents=True, exist_ok=True)
    revision = schedule_revision(revision)
    schedule, meta = make_schedule(spec, revision)
    (out_dir / "schedule.json").write_text(schedule_json(schedule, meta))
    say(f"[{spec.name}] seed {spec.seed}, profile {spec.profile}: {len(schedule)} faults over {spec.duration_s:.0f}s, "
        f"load {spec.plan.rate_rps:g} req/s -> {out_dir}")
    history = History()
    client = ApiClient(stack.api_url, stack.api_keys, history, timeout_s=spec.plan.try_timeout_s)
    events = EventSubscriber(stack.events_url, topics=MARK_TOPICS, name="soak-events", curve=stack.client_keys()).start(3.0)
    started_wall = time.time()
    set_bug(stack, spec.bug)
    player = FaultPlayer(stack, history)
    load = SoakLoad(client, spec.plan, spec.seed, tag=f"s{spec.seed % 10000}").start(spec.duration_s)
    t0 = time.monotonic()
    tail_s = spec.plan.try_timeout_s * spec.plan.max_tries + 30
    overran = None
    play_dog = watchdog(spec.duration_s + 60 + tail_s + PLAY_SLACK_S, out_dir, f"{spec.name} seed {spec.seed}: play")
    try:
        played = player.play(schedule, deadline_s=spec.duration_s + 60)
        load.finish(spec.duration_s - (time.monotonic() - t0) + tail_s)   # the quiet tail: load, no faults
    except ScenarioTimeout as exc:            # a call that hung (stacks written): heal, then judge it failed
        overran, played = str(exc), player.results()
        say(f"[{spec.name}] {overran}")
    finally:
        stop_dog(play_dog)
        heal_dog = watchdog(HEAL_LIMIT_S + tail_s, out_dir, f"{spec.name} seed {spec.seed}: heal")
        try:
            unhealed = player.heal_all()
            stats = load.stop(tail_s)
        finally:
            stop_dog(heal_dog)
    healed_at = time.monotonic()
    history.record("soak", "info", "healed", {"unhealed": unhealed})
    limit = float(policy["soak"]["max_recovery_s"])
    recovery_s = wait_recovered(stack, client, limit, f"s{spec.seed % 10000}")
    history.record("soak", "info", "recovered" if recovery_s is not None else "not-recovered", {"recovery_s": recovery_s})
    ops = history.ops
    ledgers, missing = read_ledgers(stack, started_wall - 1)
    lookups = look_up_jobs(stack, ops)
    events.stop()
    evs = events.events
    result = judge(ops, played, ledgers, missing, lookups, policy["soak"], recovery_s=recovery_s,
                   unhealed=unhealed, elapsed_s=healed_at - t0, load_stats=asdict(stats), overran=overran)
    result.update(name=spec.name, seed=spec.seed, profile=spec.profile, duration_s=spec.duration_s,
                  bug=spec.bug, git_revision=revision, replayed=meta["replayed"])
    write_artifacts(out_dir, history, evs, ledgers, lookups, result)
    say(f"[{spec.name}] {result['requests']} requests ({result['rps']} req/s), {result['faults_applied']} faults "
        f"({result['faults_per_min']}/min, {result['faults_unverified']} unverified), recovery "
        f"{recovery_s if recovery_s is not None else 'NOT within ' + str(limit)}s, checker {result['verdict']['valid']}"
        f" -> {'PASS' if result['passed'] else 'FAIL'}")
    return result


def write_artifacts(out_dir: Path, history: History, evs: list[dict], ledgers: dict, lookups: dict,
                    result: dict) -> None:
    """history, events, evidence, verdict, figures and the timeline picture of one soak."""
    (out_dir / "history.jsonl").write_text(history.to_jsonl())
    (out_dir / "events.jsonl").write_text("".join(json.dumps(e, default=str) + "\n" for e in evs))
    (out_dir / "ledgers.json").write_text(json.dumps(ledgers, indent=1))
    (out_dir / "lookups.json").write_text(json.dumps(lookups, indent=1, default=str))
    (out_dir / "verdict.json").write_text(json.dumps(result["verdict"], indent=1, default=str))
    try:
        from harness.plot import timeline
        ops = history.ops
        offset = (ops[0]["wall"] - ops[0]["time"]) if ops else time.time()
        marks = [{"time": e["_arrived"] - offset, "label": e.get("topic"), "topic": e.get("topic")} for e in evs]
        marks += [{"time": op["time"], "label": op["f"], "topic": op["f"]} for op in ops if op.get("process") == "soak"]
        result["timeline"] = str(timeline(ops, out_dir / "timeline.png",
                                          title=f"{result['name']}: seed {result['seed']}, {result['profile']}",
                                          events=marks).name)
    except Exception as exc:  # noqa: BLE001 - a missing picture is reported, not fatal
        result["timeline_error"] = repr(exc)
    (out_dir / "soak.json").write_text(json.dumps(result, indent=1, default=str))
