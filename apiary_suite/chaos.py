"""Scenario-level operations of the integration/chaos suites over a harness World: batches of background
jobs, job views from /v1/jobs, churn loops, OOM, load and latency probes; and the one-way, storage and
extra-worker faults, applied as fault-protocol kinds through the world's FaultBook (world.nemesis.faults),
which records them in faults.jsonl and heals whatever is still active once, at the world's close.
One instance per scenario (Chaos.of(world)); close() stops its background load."""
from __future__ import annotations

import concurrent.futures as futures
import time
import uuid
from typing import Any

# The harness's own terminal job states, not services.protocol.TERMINAL_STATES: the kit must not import services/.
from apiary_suite.independent import TERMINAL
from apiary_suite.load import BackgroundLoad, Burst, latency_summary, write_metrics
from harness.nemesis.kinds_storage import data_files
from apiary_suite.resources import memory_snapshot
from apiary_suite.world import setting


class Chaos:
    """Compound actions for one scenario; every wait is scaled by the world's timeout multiplier."""

    def __init__(self, world: Any):
        self.w = world
        self.cluster = world.cluster
        self.faults = world.nemesis.faults          # the scenario's FaultBook: protocol faults, healed at close
        self.oneway: list[Any] = []                 # one-way drops applied by drop_outgoing()
        self.read_only: Any = None                  # the storage-read-only fault while it is active
        self.background: dict[str, Any] = {}
        self.load: BackgroundLoad | None = None
        self.burst: Burst | None = None
        self.marks: dict[str, int] = {}
        self.vars: dict[str, Any] = {}
        world.on_close(self.close)

    @classmethod
    def of(cls, world: Any) -> "Chaos":
        if "chaos" not in world.vars:
            world.vars["chaos"] = cls(world)
        return world.vars["chaos"]

    # ---- teardown ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background load; the faults are the FaultBook's to heal (the world's close, right after)."""
        if self.load is not None:
            self.load.stop(30)

    @property
    def report_dir(self) -> str | None:
        return setting(self.w.settings, "report_dir", None)

    # ---- marks and events -------------------------------------------------------------------------
    def mark(self, name: str = "mark") -> int:
        self.marks[name] = self.w.events.mark()
        self.w.vars["mark"] = self.marks[name]
        return self.marks[name]

    def events_since(self, topic: str, name: str = "mark", **fields: Any) -> list[dict]:
        return self.w.events.matching(topic, since=self.marks.get(name, 0), **fields)

    # ---- background jobs --------------------------------------------------------------------------
    def start_batch(self, n: int, tokens: int, tenant: str = "tenant-a", stream: bool = False,
                    prefix: str = "batch", wait_dispatch_s: float = 5.0) -> list[Any]:
        """Start n completions in the background and wait until all n were dispatched to workers."""
        self.mark()
        bgs = [self.w.client.start_background(dict(prompt=f"{prefix}-{i}", tenant=tenant, max_tokens=tokens,
                                                   seed=i, stream=stream)) for i in range(n)]
        self.w.vars.setdefault("background", []).extend(bgs)
        self.w.wait_event("job.dispatched", wait_dispatch_s, since=self.marks["mark"], count=n)
        return bgs

    def dispatched(self, name: str = "mark") -> dict[str, list[dict]]:
        """job id -> its job.dispatched events since a mark."""
        out: dict[str, list[dict]] = {}
        for e in self.events_since("job.dispatched", name):
            out.setdefault(e["job_id"], []).append(e)
        return out

    def start_named(self, name: str, **spec: Any) -> Any:
        """Start one background completion remembered by name."""
        self.background[name] = self.w.client.start_background(spec)
        return self.background[name]

    def join_named(self, name: str, timeout_s: float) -> Any:
        return self.background[name].join(self.w.scaled(timeout_s))

    # ---- job views ------------------------------------------------------------------------------------
    def job_view(self, job_id: str) -> dict:
        resp = self.w.client.get_job(job_id, tenant="admin")
        if resp is None or resp.status_code != 200:
            # jobs belong to their tenant: try the others before calling it missing
            for tenant in ("tenant-a", "tenant-b"):
                resp = self.w.client.get_job(job_id, tenant=tenant)
                if resp is not None and resp.status_code == 200:
                    break
        if resp is None or resp.status_code != 200:
            return {"id": job_id, "state": None, "status": getattr(resp, "status_code", None)}
        return resp.json()

    def job_views(self, ids: list[str]) -> dict[str, dict]:
        with futures.ThreadPoolExecutor(8) as pool:
            return dict(zip(ids, pool.map(self.job_view, ids)))

    def completed_ids(self) -> list[str]:
        return [c.job_id for c in self.w.client.completions if c.ok and c.job_id]

    def accepted_ids(self, name: str = "mark") -> list[str]:
        return [e["job_id"] for e in self.events_since("job.accepted", name)]

    def wait_terminal(self, ids: list[str], timeout_s: float) -> dict[str, dict]:
        """Every job id answers GET /v1/jobs with a terminal state before the (scaled) deadline."""
        views: dict[str, dict] = {}

        def done() -> bool:
            pending = [j for j in ids if (views.get(j) or {}).get("state") not in TERMINAL]
            views.update(self.job_views(pending))
            return all((views.get(j) or {}).get("state") in TERMINAL for j in ids)
        try:
            self.w.wait_until(done, timeout_s, "every job terminal in /v1/jobs", interval_s=0.2)
        except AssertionError:
            stuck = {j: (views.get(j) or {}).get("state", (views.get(j) or {}).get("status")) for j in ids
                     if (views.get(j) or {}).get("state") not in TERMINAL}
            raise AssertionError(f"{len(stuck)} of {len(ids)} jobs not terminal in /v1/jobs within "
                                 f"{self.w.scaled(timeout_s):.1f}s: {stuck}") from None
        return views

    # ---- serving checks ---------------------------------------------------------------------------
    def serves_again(self, field: str, value: str, timeout_s: float) -> dict:
        """Send short completions until one is served by the worker/hive (job.completed event), or fail."""
        deadline = time.monotonic() + self.w.scaled(timeout_s)
        seen: list = []
        i = 0
        while time.monotonic() < deadline:
            res = self.w.client.run_many([dict(prompt=f"probe-{value}-{i}-{k}", tenant="tenant-b", max_tokens=2,
                                               seed=k) for k in range(4)], max_workers=4)
            i += 1
            ids = {r.job_id for r in res if r.ok}
            try:
                self.w.events.wait_for("job.completed", timeout_s=1.0,
                                       predicate=lambda e: e.get("job_id") in ids and e.get(field) == value)
                return {"attempts": i}
            except AssertionError:
                seen.append(sorted({e.get(field) for e in self.w.events.matching("job.completed")
                                    if e.get("job_id") in ids}))
        raise AssertionError(f"no completion served by {field}={value} within {self.w.scaled(timeout_s):.1f}s "
                             f"(served by: {seen[-5:]})")

    # ---- process faults ---------------------------------------------------------------------------
    def churn(self, workers: list[str], rounds: int, pause_s: float, timeout_s: float = 10.0) -> list[dict]:
        """Kill and start workers in turn (bounded: `rounds` times); each loss and re-registration observed."""
        out = []
        for i in range(rounds):
            w = workers[i % len(workers)]
            m = self.w.events.mark()
            t0 = time.monotonic()
            self.w.nemesis.proc.kill(w)
            lost = self.w.wait_event("worker.lost", timeout_s, since=m, worker_id=w)
            time.sleep(pause_s)
            self.w.nemesis.proc.start(w)
            self.w.wait_event("worker.registered", timeout_s, since=m, worker_id=w)
            self.w.wait_until(lambda: (self.w.worker(w) or {}).get("state") == "ready", timeout_s, f"{w} ready")
            out.append({"worker": w, "lost_after_s": round(lost["_arrived"] - (time.time() - (time.monotonic() - t0)), 3),
                        "round_s": round(time.monotonic() - t0, 3)})
            time.sleep(pause_s)
        self.vars["churn"] = out
        return out

    def running_job_worker(self, timeout_s: float = 5.0) -> tuple[str, str]:
        """(worker id, job id) of the background job dispatched since the last mark."""
        ev = self.w.dispatched_job(timeout_s)
        return ev["worker_id"], ev["job_id"]

    def oom(self, when: str) -> str:
        """Make the worker of the running background job run out of memory, during inference ('now') or
        while loading a model ('on_load', then a model is provisioned on its hive)."""
        worker, job = self.running_job_worker()
        self.vars.update(oom_worker=worker, oom_job=job, oom_at=time.time())
        if when == "load":
            hive = self.w.hive_of(worker)
            self.w.nemesis.proc.set_faults(worker, oom="on_load")
            model = f"oom-load-{uuid.uuid4().hex[:6]}"
            resp = self.w.client.post("/v1/models/provision", tenant="admin", f="provision",
                                      json_body={"model": model, "size_bytes": 400_000, "hives": [hive]})
            assert resp is not None and resp.status_code == 202, f"provision: {resp and resp.status_code} {resp and resp.text}"
            self.vars["oom_model"] = model
        else:
            self.w.nemesis.proc.set_faults(worker, oom="now")
        return worker

    def wait_exit(self, service: str, code: int, oom_killed: bool | None, timeout_s: float) -> dict:
        def check() -> dict | None:
            st = self.cluster.inspect(service) or {}
            if st.get("status") in ("exited", "dead") and st.get("exit_code") == code and \
                    (oom_killed is None or bool(st.get("oom_killed")) == oom_killed):
                return st
            return None
        try:
            return self.w.wait_until(check, timeout_s, f"{service} exited {code} (OOMKilled={oom_killed})",
                                     interval_s=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; state now: {self.cluster.inspect(service)}") from None

    # ---- orchestrator and registry ------------------------------------------------------------------
    def orchestrator_health(self) -> dict | None:
        try:
            resp = self.w.http("orchestrator", "/health", timeout=2)
        except Exception:  # noqa: BLE001 - down while restarting
            return None
        return resp.json() if resp.status_code == 200 else None

    def wait_orchestrator(self, timeout_s: float) -> dict:
        return self.w.wait_until(self.orchestrator_health, timeout_s, "orchestrator /health 200", interval_s=0.1)

    def reformed(self) -> dict | None:
        try:
            return self.cluster.workers_ready()
        except Exception:  # noqa: BLE001
            return None

    def corrupt_registry_and_restart(self) -> Any:
        """storage-corrupt: stop the orchestrator, overwrite registry.db with garbage, start it again."""
        return self.faults.apply("storage-corrupt", "orchestrator")

    def read_only_registry_and_restart(self) -> None:
        """storage-read-only (verified before the restart: a write as the service user fails), then a restart."""
        self.read_only = self.faults.apply("storage-read-only", "orchestrator", background=False)
        self.w.nemesis.proc.restart("orchestrator")

    def make_registry_writable(self) -> None:
        """Heal the read-only fault: /data writable again for the service user (proved by a write)."""
        assert self.read_only is not None, "the registry volume was not made read-only in this scenario"
        left = self.faults.heal([self.read_only])
        assert not left, f"registry volume not writable again: {left}"
        self.read_only = None

    def data_files(self) -> list[str]:
        """File names in the orchestrator's /data."""
        return data_files(self.cluster)

    # ---- one-way partitions -------------------------------------------------------------------------
    def drop_outgoing(self, service: str, peer: str) -> Any:
        """Every packet `service` sends to `peer` is dropped (partition service|peer, one way)."""
        fault = self.faults.apply("partition", f"{service}|{peer}", direction="a->b")
        self.oneway.append(fault)
        return fault

    def heal_oneway(self) -> list[str]:
        """Heal the one-way drops; returns what could not be undone."""
        left = self.faults.heal(self.oneway)
        self.oneway = [f for f in self.oneway if self.faults.is_active(f)]
        return left

    # ---- extra workers --------------------------------------------------------------------------------
    def join_extra_workers(self, n: int, hive: str) -> list[str]:
        """extra-workers: n more mock workers join `hive` at once; returns their worker ids."""
        self.mark("extras")
        fault = self.faults.apply("extra-workers", hive, count=n)
        self.vars["extra_ids"] = fault.worker_ids
        return fault.worker_ids

    # ---- provisioning -----------------------------------------------------------------------------------
    def hive_models(self, hive: str) -> dict:
        return self.w.http(hive, "/v1/models").json()

    def provision_at_once(self, n: int, size: int, hive: str) -> list[Any]:
        model = f"shared-{uuid.uuid4().hex[:6]}"
        self.vars.update(shared_model=model, hive=hive,
                         before_models=self.hive_models(hive), before_metrics=self.w.scrape(hive))
        self.mark("provision")

        def one(_i: int) -> Any:
            return self.w.client.post("/v1/models/provision", tenant="admin", f="provision",
                                      json_body={"model": model, "size_bytes": size, "hives": [hive]})
        with futures.ThreadPoolExecutor(n) as pool:
            out = list(pool.map(one, range(n)))
        self.vars["provision_responses"] = out
        return out

    # ---- load ---------------------------------------------------------------------------------------------
    def queue_max(self) -> int:
        """The orchestrator's admission limit, as it reports it on /metrics."""
        limit = self.w.metric("orchestrator", "apiary_admission_limit")
        assert limit, "orchestrator /metrics has no apiary_admission_limit gauge"
        return int(limit)

    def start_burst(self, extra: int, tokens: int, tenant: str = "tenant-a") -> int:
        n = self.queue_max() + extra
        self.burst = Burst(self.cluster.api_url, self.cluster.api_keys[tenant], self.w.history, tenant=tenant,
                           timeout_s=self.w.scaled(90))
        self.burst.start([dict(prompt=f"burst-{i}", max_tokens=tokens, seed=i) for i in range(n)])
        self.vars["burst_n"] = n
        return n

    def throttled(self) -> float:
        return self.w.metric("orchestrator", "apiary_jobs_total", outcome="throttled")

    def run_load(self, clients: int, seconds: float, tokens: int) -> dict:
        """Sustained load for a fixed time (bounded); returns the latency summary, also written to
        <report dir>/chaos-metrics.jsonl."""
        self.load = BackgroundLoad(self.w.client, clients=clients, max_tokens=tokens,
                                   tenants=("tenant-a", "tenant-b"), max_s=seconds + 5).start()
        time.sleep(seconds)
        results = self.load.stop(60)
        elapsed = self.load.elapsed_s
        self.load = None
        summary = latency_summary(r.latency for r in results)
        data = {"clients": clients, "duration_s": round(elapsed, 2), "requests": len(results),
                "ok": sum(1 for r in results if r.ok), "throughput_rps": round(len(results) / elapsed, 1),
                **{f"latency_{k}_ms" if k not in ("count",) else k: (round(v * 1000, 2) if isinstance(v, float) else v)
                   for k, v in summary.items()}}
        write_metrics(self.report_dir, "stress", data)
        self.vars["stress"] = data
        return data

    def query_while_streaming(self, seconds: float) -> dict:
        """Query /v1/jobs/{id} (jobs streaming now) and /v1/workers back to back for `seconds`."""
        ids = self.accepted_ids()
        assert ids, "no job accepted since the mark"
        lat: dict[str, list[float]] = {"jobs": [], "workers": []}
        end = time.monotonic() + seconds
        i = 0
        states = set()
        while time.monotonic() < end:
            t0 = time.monotonic()
            resp = self.w.client.get_job(ids[i % len(ids)], tenant="tenant-a")
            lat["jobs"].append(time.monotonic() - t0)
            assert resp is not None and resp.status_code == 200, f"GET /v1/jobs: {resp and resp.status_code}"
            states.add(resp.json().get("state"))
            t0 = time.monotonic()
            view = self.w.client.workers()
            lat["workers"].append(time.monotonic() - t0)
            assert view.get("workers"), "GET /v1/workers failed during streaming"
            i += 1
        data = {k: {kk: (round(vv * 1000, 2) if isinstance(vv, float) else vv) for kk, vv in latency_summary(v).items()}
                for k, v in lat.items()}
        data["job_states_seen"] = sorted(s for s in states if s)
        write_metrics(self.report_dir, "queries-during-streaming", data)
        self.vars["queries"] = data
        return data

    def memory(self, services: list[str]) -> dict:
        return memory_snapshot(self.cluster, services)
