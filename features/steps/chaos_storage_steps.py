"""Chaos steps for the registry's storage faults, concurrent registration and downloads, and
backpressure: one line each over apiary_suite.chaos. Every Then asserts on something observed."""
from behave import then, when

from services.protocol import generate_text


# ---- registry ------------------------------------------------------------------------------------------
@when("the orchestrator is stopped, its registry database overwritten with garbage, and started again")
def step_corrupt(context):
    context.world.chaos.corrupt_registry_and_restart()


@when("the orchestrator's registry volume is made read-only and the orchestrator restarted")
def step_read_only(context):
    context.world.chaos.read_only_registry_and_restart()


@when("the orchestrator's registry volume is made writable again")
def step_writable(context):
    context.world.chaos.make_registry_writable()


@then("the orchestrator answers /health within {s:g} seconds")
def step_orch_health(context, s):
    context.world.chaos.vars["health"] = context.world.chaos.wait_orchestrator(s)


@then('the orchestrator\'s /health reports a registry error mentioning "{text}" within {s:g} seconds')
def step_health_registry_error(context, text, s):
    context.world.wait_until(lambda: (lambda reg: reg not in ("ok", "None") and text in reg)(str((context.world.chaos.orchestrator_health() or {}).get("registry"))), s, f"/health registry error mentioning {text!r}")


@then("the orchestrator's /health reports the registry ok within {s:g} seconds")
def step_health_registry_ok(context, s):
    context.world.wait_until(lambda: (context.world.chaos.orchestrator_health() or {}).get("registry") == "ok", s, "/health registry ok")


@then('the orchestrator\'s log shows "{text}"')
def step_orch_log(context, text):
    logs = context.world.service_logs("orchestrator", since=context.world.started - 1)
    assert text in logs, f"{text!r} not in the orchestrator log; last lines: {logs[-1500:]}"


@then('the corrupt registry file was moved aside next to a new "registry.db"')
def step_moved_aside(context):
    files = context.world.chaos.data_files()
    assert "registry.db" in files and any(f.startswith("registry.db.corrupt-") for f in files), f"/data holds {files}"


@then("the cluster re-forms with 2 hives and 4 ready workers within {s:g} seconds")
def step_reformed(context, s):
    context.world.wait_until(context.world.chaos.reformed, s, "2 hives and 4 workers ready in /v1/workers")


# ---- concurrent registration -------------------------------------------------------------------------
@when('{n:d} extra workers join hive "{hive}" at the same time')
def step_extra_join(context, n, hive):
    context.world.chaos.join_extra_workers(n, hive)


@then("/v1/workers lists every extra worker exactly once as ready within {s:g} seconds")
def step_extra_listed(context, s):
    ids = set(context.world.chaos.vars["extra_ids"])
    context.world.wait_until(lambda: ids <= {w["id"] for w in context.world.workers_view().get("workers", []) if w.get("state") == "ready"}, s, f"{len(ids)} extra workers ready")
    listed = [w["id"] for w in context.world.workers_view().get("workers", [])]
    dup = sorted({i for i in listed if listed.count(i) > 1})
    assert not dup, f"workers listed more than once: {dup}"


@then('hive "{hive}" lists every extra worker exactly once')
def step_extra_hive_listed(context, hive):
    listed = [w.get("id", w.get("worker_id")) for w in context.world.http(hive, "/v1/workers").json().get("workers", [])]
    missing = set(context.world.chaos.vars["extra_ids"]) - set(listed)
    dup = sorted({i for i in listed if listed.count(i) > 1})
    assert not missing and not dup, f"{hive} /v1/workers: missing {sorted(missing)}, duplicated {dup}, listed {listed}"


@then('exactly one "worker.registered" event was published for each extra worker')
def step_extra_events(context):
    evs = context.world.chaos.events_since("worker.registered", "extras")
    counts = {i: sum(1 for e in evs if e.get("worker_id") == i) for i in context.world.chaos.vars["extra_ids"]}
    assert all(n == 1 for n in counts.values()), f"worker.registered per extra worker: {counts}"


@then("the extra workers serve completions")
def step_extra_serve(context):
    ids = set(context.world.chaos.vars["extra_ids"])
    res = context.world.client.run_many([dict(prompt=f"extra-{i}", tenant="tenant-a", max_tokens=2, seed=i) for i in range(24)], max_workers=24)
    assert all(r.ok for r in res), f"failed: {[(r.status, r.error) for r in res if not r.ok][:5]}"
    served = {e.get("worker_id") for e in context.world.events.matching("job.completed") if e.get("job_id") in {r.job_id for r in res}}
    assert served & ids, f"no job served by an extra worker; served by {sorted(served)}"


# ---- concurrent downloads ------------------------------------------------------------------------------
@when('the admin sends {n:d} provision requests at once for one new model of {size:d} bytes to hive "{hive}"')
def step_provision_many(context, n, size, hive):
    context.world.chaos.provision_at_once(n, size, hive)


@then("every provision request was accepted with 202")
def step_provision_accepted(context):
    out = context.world.chaos.vars["provision_responses"]
    assert all(r is not None and r.status_code == 202 for r in out), f"provision answers: {[(r and r.status_code, r and r.text[:200]) for r in out]}"


@then('a "model.ready" event for that model is published within {s:g} seconds')
def step_shared_ready(context, s):
    context.world.wait_event("model.ready", s, model=context.world.chaos.vars["shared_model"])


@then("the hive started exactly one download of that model")
def step_one_download(context):
    c = context.world.chaos
    hive = c.vars["hive"]
    after_models, after = c.hive_models(hive), context.world.scrape(hive)
    started = after_models["downloads_started"] - c.vars["before_models"]["downloads_started"]

    def delta(outcome):
        key = ("apiary_hive_downloads_total", (("outcome", outcome),))
        return after.get(key, 0) - c.vars["before_metrics"].get(key, 0)
    assert started == 1 and delta("started") == 1 and delta("shared") + delta("cached") == 2, f"downloads_started +{started}, metric deltas started={delta('started')} shared={delta('shared')} cached={delta('cached')} completed={delta('completed')}"


@then("a completion of that model returns the mock model's output")
def step_shared_served(context):
    m = context.world.chaos.vars["shared_model"]
    context.world.wait_until(lambda: context.world.model_ready(m), 10, f"{m} available")
    r = context.world.client.complete(f"model {m}", tenant="tenant-a", max_tokens=4, model=m)
    assert r.ok and r.text == generate_text(r.prompt, r.seed, r.max_tokens), f"status={r.status} error={r.error} text={r.text!r}"


# ---- backpressure ------------------------------------------------------------------------------------
@when("a burst of {extra:d} more {k:d}-token completions than the admission queue holds is sent at once")
def step_burst(context, extra, k):
    context.world.chaos.start_burst(extra, k)


@when("the orchestrator has throttled at least {n:d} requests within {s:g} seconds")
@then("the orchestrator has throttled at least {n:d} requests within {s:g} seconds")
def step_throttled(context, n, s):
    context.world.wait_until(lambda: context.world.chaos.throttled() >= n, s, f"{n} throttled requests (apiary_jobs_total{{outcome=throttled}})", interval_s=0.2)


@when("the workers are fast again")
def step_fast_again(context):
    [context.world.nemesis.proc.set_faults(w, tokens_per_s=None) for w in context.world.worker_services()]


@then("the burst is fully answered within {s:g} seconds")
def step_burst_done(context, s):
    context.world.chaos.vars["burst"] = context.world.chaos.burst.join(context.world.scaled(s))


@then("every burst request was answered 200 with the mock model's output or 429 with a Retry-After header")
def step_burst_outcomes(context):
    res = context.world.chaos.vars["burst"]
    bad = [r for r in res if not ((r.get("status") == 200 and r.get("text") == generate_text(r["prompt"], r["seed"], r["max_tokens"]))
                                  or (r.get("status") == 429 and r.get("retry_after")))]
    n429 = sum(1 for r in res if r.get("status") == 429)
    n200 = sum(1 for r in res if r.get("status") == 200)
    assert n429 and n200 and not bad, f"{n200} x 200, {n429} x 429, {len(bad)} other: {[(r.get('status'), r.get('body') or r.get('exception')) for r in bad[:5]]}"


@then('the "orchestrator" queue depth returns to 0 within {s:g} seconds')
def step_queue_empty(context, s):
    context.world.wait_until(lambda: context.world.metric("orchestrator", "apiary_queue_depth") == 0 and context.world.metric("orchestrator", "apiary_jobs_inflight") == 0, s, "queue depth and in-flight 0")
