"""Per-scenario state: API client + history, event subscriber (started at scenario begin), nemesis,
checks; close() stops and heals everything; artifacts() feeds the failure bundle."""
from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Callable

import requests

from apiary_suite import checker
from apiary_suite.client import ApiClient
from apiary_suite.events import EventSubscriber
from harness.history import History
from apiary_suite.scenario_faults import Nemesis

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - prometheus_client is a pinned dependency
    text_string_to_metric_families = None


def setting(settings: Any, name: str, default: Any = None) -> Any:
    """Read a setting from an object or a mapping."""
    if isinstance(settings, dict):
        return settings.get(name, default)
    return getattr(settings, name, default)


class World:
    """Everything one scenario uses; steps call its attributes and methods, one line each."""

    def __init__(self, cluster: Any, settings: Any = None, start_events: bool = True):
        self.cluster = cluster
        self.settings = settings
        self.multiplier = float(setting(settings, "timeout_multiplier", 1.0) or 1.0)
        self.run_id = str(setting(settings, "run_id", "") or "")
        self.history = History()
        self.faults = History()
        self.client = ApiClient(cluster.api_url, cluster.api_keys, self.history,
                                timeout_s=30 * self.multiplier) if cluster is not None else None
        self.nemesis = Nemesis(cluster, run_id=self.run_id, history=self.faults) if cluster is not None else None
        self.events = EventSubscriber(cluster.events_url, name="scenario-events", curve=cluster.client_keys()) if cluster is not None else None
        self.subscribers: dict[str, EventSubscriber] = {}
        self.checks: list[dict] = []
        self.vars: dict[str, Any] = {}       # scenario scratch: last response, job ids, marks...
        self.started = time.time()
        self._closers: list[Callable[[], Any]] = []
        if start_events and self.events is not None:
            self.events.start(connect_timeout_s=3.0)

    # ---- time -------------------------------------------------------------------------------------
    def scaled(self, seconds: float) -> float:
        """A wording's time limit scaled by the runner's timeout multiplier."""
        return float(seconds) * self.multiplier

    def wait_until(self, condition: Callable[[], Any], timeout_s: float, err_msg: str,
                   interval_s: float = 0.05) -> Any:
        """Poll `condition` until truthy within the scaled timeout, else AssertionError(err_msg + last value)."""
        deadline = time.monotonic() + self.scaled(timeout_s)
        last: Any = None
        while True:
            try:
                last = condition()
            except (requests.RequestException, ValueError, KeyError) as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise AssertionError(f"{err_msg} within {self.scaled(timeout_s):.2f}s (last observed: {last!r:.600})")
            time.sleep(interval_s)

    def wait_event(self, topic: str, timeout_s: float, since: int = 0, count: int = 1, **fields: Any) -> dict:
        """Wait (scaled) for the count-th event of `topic` with `fields` seen since the mark `since`."""
        return self.events.wait_for(topic, timeout_s=self.scaled(timeout_s), since=since, count=count, **fields)

    # ---- cluster views ----------------------------------------------------------------------------
    def workers_view(self) -> dict:
        """GET /v1/workers as the admin ({} when it fails)."""
        return self.client.workers()

    def worker(self, worker_id: str) -> dict | None:
        return next((w for w in self.workers_view().get("workers", []) if w.get("id") == worker_id), None)

    def ready_workers(self) -> list[str]:
        return sorted(w["id"] for w in self.workers_view().get("workers", []) if w.get("state") == "ready")

    def worker_services(self) -> list[str]:
        return [s for s in self.cluster.services if s.startswith("worker-")]

    def hive_services(self) -> list[str]:
        return [s for s in self.cluster.services if s.startswith("hive-")]

    def http(self, service: str, path: str, method: str = "GET", **kw: Any) -> requests.Response:
        """Plain HTTP to a service's own port (health, metrics, faults); not a tenant operation."""
        return requests.request(method, self.cluster.http_url(service).rstrip("/") + path,
                                timeout=kw.pop("timeout", 5 * self.multiplier), **kw)

    # ---- metrics ----------------------------------------------------------------------------------
    def scrape(self, service: str = "orchestrator") -> dict[tuple, float]:
        """Parse a service's /metrics as Prometheus text: {(sample name, sorted labels): value}."""
        text = self.http(service, "/metrics").text
        return parse_metrics(text)

    def metric(self, service: str, name: str, **labels: str) -> float:
        """Sum of samples `name` whose labels include `labels` (0 when absent)."""
        return metric_sum(self.scrape(service), name, **labels)

    # ---- logs -------------------------------------------------------------------------------------
    def service_logs(self, service: str, since: float | None = None) -> str:
        out = self.cluster.logs(service, since=since if since is not None else self.started - 1)
        return out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out or "")

    # ---- checks -----------------------------------------------------------------------------------
    def check(self, name: str, result: dict) -> dict:
        """Record a checker result and assert it is valid (the message carries the details)."""
        self.checks.append({"check": name, **result})
        assert result.get("valid"), f"check {name} failed: {json.dumps(result, default=str)[:3000]}"
        return result

    def ops_with_workers(self) -> list[dict]:
        """History ops annotated with the worker of each job (from job events)."""
        return checker.annotate_workers(self.history.ops, self.events.events)

    # ---- subscribers ------------------------------------------------------------------------------
    def subscribe(self, name: str, topics: tuple[str, ...] = ("",)) -> EventSubscriber:
        """Start an extra named subscriber (its events land in artifacts too)."""
        sub = EventSubscriber(self.cluster.events_url, topics=topics, name=name, curve=self.cluster.client_keys()).start()
        assert sub.connected, f"subscriber {name} did not connect to {self.cluster.events_url}"
        self.subscribers[name] = sub
        return sub

    @property
    def intruders(self) -> Any:
        """The scenario's intruder hives (apiary_suite/intruders.py), made on first use."""
        if "intruders" not in self.vars:
            from apiary_suite.intruders import Intruders
            self.vars["intruders"] = Intruders(self)
        return self.vars["intruders"]

    @property
    def chaos(self) -> Any:
        """The scenario's compound chaos operations (apiary_suite/chaos.py), made on first use."""
        from apiary_suite.chaos import Chaos
        return Chaos.of(self)

    @property
    def netquality(self) -> Any:
        """The scenario's link-quality faults and measurements (apiary_suite/netquality.py), made on first use."""
        from apiary_suite.netquality import NetQuality
        return NetQuality.of(self)

    @property
    def soaks(self) -> Any:
        """The scenario's chaos soaks (apiary_suite/soak_suite.py), made on first use."""
        from apiary_suite.soak_suite import Soaks
        return Soaks.of(self)

    def on_close(self, fn: Callable[[], Any]) -> None:
        self._closers.append(fn)

    # ---- scenario actions (compound steps stay one line) ------------------------------------------
    def last(self) -> Any:
        """The last response or Completion a step produced."""
        assert "last" in self.vars, "no request was made in this scenario yet"
        return self.vars["last"]

    def remember(self, obj: Any) -> Any:
        self.vars["last"] = obj
        return obj

    def start_completion(self, **spec: Any) -> Any:
        """Start a completion in the background, marking the event stream so its job can be found."""
        self.vars["mark"] = self.events.mark()
        bg = self.client.start_background(spec)
        self.vars.setdefault("background", []).append(bg)
        return bg

    def finish_background(self, timeout_s: float) -> list:
        """Join every background completion (scaled timeout); the last one becomes `last`."""
        done = [bg.join(self.scaled(timeout_s)) for bg in self.vars.pop("background", [])]
        if done:
            self.remember(done[-1])
        return done

    def dispatched_job(self, timeout_s: float = 5.0, index: int = 1) -> dict:
        """The index-th job.dispatched event since the last mark (the background job's dispatch)."""
        return self.wait_event("job.dispatched", timeout_s, since=self.vars.get("mark", 0), count=index)

    def crash_worker_of_running_job(self, timeout_s: float = 5.0) -> str:
        """Find the background job's worker and make it crash at its next token; remember when."""
        ev = self.dispatched_job(timeout_s)
        worker = ev["worker_id"]
        self.nemesis.proc.crash_after_tokens(worker, 1, exit_code=3)
        self.vars.update(crashed=worker, crash_at=time.time(), crashed_job=ev.get("job_id"))
        return worker

    def job(self, job_id: str, tenant: str = "admin") -> dict:
        resp = self.client.get_job(job_id, tenant=tenant)
        assert resp is not None and resp.status_code == 200, f"GET /v1/jobs/{job_id} as {tenant}: {resp and resp.status_code}"
        return resp.json()

    def set_all_workers(self, **faults: Any) -> None:
        for w in self.worker_services():
            self.nemesis.proc.set_faults(w, **faults)

    def model_entry(self, model: str) -> dict | None:
        resp = self.client.get("/v1/models", tenant="admin", f="list_models")
        data = resp.json().get("data", []) if resp is not None and resp.status_code == 200 else []
        return next((m for m in data if m.get("id") == model), None)

    def keys_in_logs(self) -> dict[str, list[str]]:
        """Service -> API keys found in its log since the scenario began (should be empty)."""
        found: dict[str, list[str]] = {}
        for svc in self.cluster.services:
            text = self.service_logs(svc, since=0)
            hits = [t for t, k in self.cluster.api_keys.items() if k and k in text]
            if hits:
                found[svc] = hits
        return found

    def model_ready(self, model: str) -> dict | None:
        """The /v1/models entry of `model` once it is ready (no state field counts as ready)."""
        entry = self.model_entry(model)
        return entry if entry and entry.get("state", "ready") in ("ready", "available") else None

    def jobs_on_worker(self, job_ids: list[str], worker: str) -> list[str]:
        """Those of job_ids that ran on `worker` according to job.dispatched/completed events."""
        ids = set(job_ids)
        return sorted({e["job_id"] for e in self.events.events
                       if e.get("job_id") in ids and e.get("worker_id") == worker
                       and e.get("topic") in ("job.dispatched", "job.completed")})

    def exited_services(self) -> dict | None:
        """{service: inspect state} once every service has stopped, else None."""
        states = {s: self.cluster.inspect(s) or {} for s in self.cluster.services}
        done = all(str(st.get("status", "")).lower() in ("exited", "dead", "stopped") for st in states.values())
        return states if done else None

    def shutdown_order_violations(self) -> list[str]:
        """Cascade order seen on the event stream and in process state: every worker's worker.left comes
        before its hive's hive.left, and every hive.left before the orchestrator process finished."""
        left = {e.get("worker_id") or e.get("hive_id"): e["ts"] for e in self.events.events
                if e.get("topic") in ("worker.left", "hive.left")}
        bad = [f"no worker.left/hive.left event for {s}" for s in self.worker_services() + self.hive_services()
               if s not in left]
        for w in self.worker_services():
            hive = self.hive_of(w)
            if w in left and hive in left and left[w] > left[hive]:
                bad.append(f"{w} left at {left[w]:.3f}, after {hive} at {left[hive]:.3f}")
        end = to_epoch((self.cluster.inspect("orchestrator") or {}).get("finished_at"))
        if end is None:
            bad.append("orchestrator has no finished_at")
        for h in self.hive_services():
            if h in left and end is not None and left[h] > end + 0.001:
                bad.append(f"{h} left at {left[h]:.3f}, after the orchestrator finished at {end:.3f}")
        return bad

    def hive_of(self, worker: str) -> str:
        """The hive a worker service belongs to (worker-a1 -> hive-a)."""
        return "hive-" + worker.split("-", 1)[1][0]

    def scrape_problem(self, service: str) -> str | None:
        """Why a service's /metrics is not valid Prometheus text with apiary_ samples (None when fine)."""
        try:
            resp = self.http(service, "/metrics")
            samples = parse_metrics(resp.text)
        except Exception as exc:  # noqa: BLE001 - reported as the problem
            return repr(exc)
        if resp.status_code != 200 or not any(name.startswith("apiary_") for name, _ in samples):
            return f"status {resp.status_code}, {len(samples)} samples, none apiary_*"
        return None

    # ---- teardown / artifacts ---------------------------------------------------------------------
    def close(self) -> list[str]:
        """Stop subscribers and clients, heal every fault, remove containers started; returns errors."""
        errors: list[str] = []
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - teardown reports, never stops half-way
                errors.append(repr(exc))
        if self.nemesis is not None:
            errors += self.nemesis.close()
        for sub in [*self.subscribers.values(), self.events]:
            if sub is not None:
                sub.stop()
        if self.client is not None:
            self.client.close()
        self.vars["close_errors"] = errors
        return errors

    def artifacts(self) -> dict[str, str]:
        """Files for the failure bundle: events, faults, history, checks, extra subscribers."""
        out = {"history.jsonl": self.history.to_jsonl(), "faults.jsonl": self.faults.to_jsonl(),
               "checks.json": json.dumps(self.checks, indent=1, default=str)}
        if self.events is not None:
            out["events.jsonl"] = "".join(json.dumps(e, default=str) + "\n" for e in self.events.events)
            gaps = self.events.gaps()
            if gaps or self.events.malformed:
                out["events-problems.json"] = json.dumps({"gaps": gaps, "malformed": self.events.malformed})
        for name, sub in self.subscribers.items():
            out[f"events-{name}.jsonl"] = "".join(json.dumps(e, default=str) + "\n" for e in sub.events)
        for holder in self.vars.values():   # e.g. the scenario's soaks: where their evidence is
            if hasattr(holder, "artifacts") and callable(holder.artifacts):
                out.update(holder.artifacts())
        return out


def to_epoch(value: Any) -> float | None:
    """Epoch seconds of a float or an ISO-8601 timestamp (docker's nanosecond 'Z' form included)."""
    if value in (None, "", "0001-01-01T00:00:00Z"):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).replace("Z", "+00:00")
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    return datetime.fromisoformat(text).timestamp()


def status_of(obj: Any) -> int | None:
    """HTTP status of a requests.Response or a Completion."""
    return getattr(obj, "status_code", None) if not hasattr(obj, "status") else obj.status


def error_of(obj: Any) -> dict:
    """The OpenAI-style error object of a response or Completion ({} when none)."""
    if hasattr(obj, "status"):
        return obj.error or {}
    try:
        body = obj.json()
    except ValueError:
        return {"message": obj.text}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else (body if isinstance(body, dict) else {"message": str(body)})


def parse_metrics(text: str) -> dict[tuple, float]:
    """Parse Prometheus text exposition (raises ValueError when it does not parse)."""
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def metric_sum(samples: dict[tuple, float], name: str, **labels: str) -> float:
    """Sum the samples named `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))
