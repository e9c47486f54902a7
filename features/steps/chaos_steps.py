"""Integration and chaos steps: one line each over apiary_suite.chaos (batches, job views, churn, OOM,
load, memory, queries during streaming, client disconnect; storage, registration, downloads and
backpressure are in chaos_storage_steps.py). Every Then asserts on something observed."""
from behave import given, then, when

from services.protocol import generate_text


def _list(text):
    return [t.strip() for t in text.split(",") if t.strip()]


# ---- background jobs -------------------------------------------------------------------------------
@when('tenant "{tenant}" starts {n:d} completions of {k:d} tokens that are all dispatched within {s:g} seconds')
def step_start_batch(context, tenant, n, k, s):
    context.world.chaos.start_batch(n, k, tenant=tenant, wait_dispatch_s=s)


@when('tenant "{tenant}" starts {n:d} streamed completions of {k:d} tokens that are all dispatched within {s:g} seconds')
def step_start_batch_streamed(context, tenant, n, k, s):
    context.world.chaos.start_batch(n, k, tenant=tenant, stream=True, prefix="streamed", wait_dispatch_s=s)


@then('some of those jobs were running on hive "{hive}"')
def step_some_on_hive(context, hive):
    on = {j for j, evs in context.world.chaos.dispatched().items() if evs[0].get("hive_id") == hive}
    assert on, f"no job of the batch was dispatched to {hive}: {context.world.chaos.dispatched()}"
    context.world.chaos.vars["on_target"] = sorted(on)


@then('some of those jobs were running on worker "{worker}"')
def step_some_on_worker(context, worker):
    on = {j for j, evs in context.world.chaos.dispatched().items() if evs[0].get("worker_id") == worker}
    assert on, f"no job of the batch was dispatched to {worker}: {context.world.chaos.dispatched()}"
    context.world.chaos.vars["on_target"] = sorted(on)


@then('the jobs that were running on {kind} "{name}" completed elsewhere according to /v1/jobs')
def step_completed_elsewhere(context, kind, name):
    field = "hive_id" if kind == "hive" else "worker_id"
    views = context.world.chaos.job_views(context.world.chaos.vars["on_target"])
    bad = {j: (v.get("state"), v.get(field), v.get("attempts")) for j, v in views.items()
           if v.get("state") != "completed" or v.get(field) == name or (v.get("attempts") or 0) < 2}
    assert not bad, f"jobs first dispatched to {kind} {name} not completed elsewhere on a later attempt: {bad}"


# ---- events ------------------------------------------------------------------------------------------
@then('a "hive.registered" event marked recovered for hive "{hive}" is published within {s:g} seconds')
def step_hive_recovered(context, hive, s):
    context.world.wait_event("hive.registered", s, hive_id=hive, recovered=True)


@then('a "worker.registered" event marked recovered for worker "{worker}" is published within {s:g} seconds')
def step_worker_recovered(context, worker, s):
    context.world.wait_event("worker.registered", s, worker_id=worker, recovered=True)


@then('hive "{hive}" serves completions again within {s:g} seconds')
def step_hive_serves(context, hive, s):
    context.world.chaos.serves_again("hive_id", hive, s)


@then('worker "{worker}" serves completions again within {s:g} seconds')
def step_worker_serves(context, worker, s):
    context.world.chaos.serves_again("worker_id", worker, s)


@then('every worker of hive "{hive}" is ready in /v1/workers within {s:g} seconds')
def step_hive_workers_ready(context, hive, s):
    context.world.wait_until(lambda: (lambda ws: len(ws) >= 2 and all(w.get("state") == "ready" for w in ws))(
        [w for w in context.world.workers_view().get("workers", []) if w.get("hive") == hive
         and w["id"] in context.world.worker_services()]), s, f"workers of {hive} ready")


# ---- multi-hive --------------------------------------------------------------------------------------
@then('/v1/jobs shows the completed jobs ran on workers of both hives "{hives}"')
def step_both_hives(context, hives):
    views = context.world.chaos.job_views(context.world.chaos.completed_ids())
    by_hive = {}
    for v in views.values():
        by_hive.setdefault(v.get("hive_id"), set()).add(v.get("worker_id"))
    workers = {w["id"]: w.get("hive") for w in context.world.workers_view().get("workers", [])}
    wrong = [(v["id"], v.get("worker_id"), v.get("hive_id")) for v in views.values() if workers.get(v.get("worker_id")) != v.get("hive_id")]
    assert set(_list(hives)) <= set(by_hive) and not wrong, f"hives serving: { {h: sorted(w) for h, w in by_hive.items()} }; worker/hive mismatches: {wrong[:5]}"


# ---- churn ---------------------------------------------------------------------------------------------
@when('a background load of {c:d} clients sending {k:d}-token completions runs')
def step_load_start(context, c, k):
    from apiary_suite.load import BackgroundLoad
    context.world.chaos.load = BackgroundLoad(context.world.client, clients=c, max_tokens=k, tenants=("tenant-a", "tenant-b"), max_s=120).start()


@when('workers "{workers}" are killed and started again {n:d} times, {p:g} seconds apart')
def step_churn(context, workers, n, p):
    context.world.chaos.churn(_list(workers), n, p)


@when("the background load stops within {s:g} seconds")
def step_load_stop(context, s):
    results = context.world.chaos.load.stop(context.world.scaled(s))
    context.world.chaos.vars["load_results"] = len(results)
    context.world.chaos.load = None


@then("the background load completed at least {n:d} requests")
def step_load_count(context, n):
    assert context.world.chaos.vars["load_results"] >= n, f"only {context.world.chaos.vars['load_results']} requests completed"


@then("every job of this scenario is terminal in /v1/jobs within {s:g} seconds")
def step_all_terminal(context, s):
    ids = sorted({e["job_id"] for e in context.world.events.matching("job.accepted")})
    assert ids, "no job.accepted event in this scenario"
    context.world.chaos.wait_terminal(ids, s)


@then("/v1/jobs agrees with every client outcome")
def step_jobs_agree(context):
    done = [c for c in context.world.client.completions if c.job_id and (c.ok or (c.status or 0) >= 400)]
    views = context.world.chaos.job_views([c.job_id for c in done])
    bad = [(c.job_id, c.status, views[c.job_id].get("state")) for c in done
           if (c.ok and views[c.job_id].get("state") != "completed") or (not c.ok and views[c.job_id].get("state") == "completed")]
    assert done and not bad, f"client outcome vs /v1/jobs state disagree for {len(bad)} jobs: {bad[:10]}"


# ---- worker restart / OOM ------------------------------------------------------------------------------
@when("the worker running that job is restarted")
def step_restart_running(context):
    worker, job = context.world.chaos.running_job_worker()
    context.world.chaos.vars.update(restarted=worker, restarted_job=job)
    context.world.vars["mark"] = context.world.events.mark()
    context.world.nemesis.proc.restart(worker)


@then("the job was handed to another worker after the restart according to /v1/jobs")
def step_handed_over(context):
    job = context.world.chaos.job_view(context.world.chaos.vars["restarted_job"])
    assert job.get("state") == "completed" and job.get("attempts", 0) >= 2 and job.get("worker_id") != context.world.chaos.vars["restarted"], f"job: {job}"


@then("the restarted worker is registered and ready again within {s:g} seconds")
def step_restarted_ready(context, s):
    w = context.world.chaos.vars["restarted"]
    context.world.wait_event("worker.registered", s, since=context.world.vars["mark"], worker_id=w)
    context.world.wait_until(lambda: (context.world.worker(w) or {}).get("state") == "ready", s, f"{w} ready")


@when("the worker running that job runs out of memory during inference")
def step_oom_inference(context):
    context.world.chaos.oom("inference")


@when("the worker running that job runs out of memory while loading a newly provisioned model")
def step_oom_load(context):
    context.world.chaos.oom("load")


@then("that worker's container exits with code 137 and OOMKilled within {s:g} seconds")
def step_oom_exit(context, s):
    context.world.chaos.wait_exit(context.world.chaos.vars["oom_worker"], 137, True, s)


@then('a "worker.lost" event for that worker is published within {s:g} seconds')
def step_oom_lost(context, s):
    context.world.wait_event("worker.lost", s, worker_id=context.world.chaos.vars["oom_worker"])


@then("the job ran to completion on another worker according to /v1/jobs")
def step_oom_job(context):
    job = context.world.chaos.job_view(context.world.chaos.vars["oom_job"])
    assert job.get("state") == "completed" and job.get("worker_id") != context.world.chaos.vars["oom_worker"] and job.get("attempts", 0) >= 2, f"job: {job}"


# ---- stress, long runs, memory ----------------------------------------------------------------------------
@when("{c:d} clients send {k:d}-token completions back to back for {t:g} seconds")
def step_stress(context, c, k, t):
    context.world.chaos.run_load(c, t, k)


@given("the stack has served {n:d} warm-up completions")
def step_warmup(context, n):
    res = context.world.client.run_many([dict(prompt=f"warm-{i}", tenant="tenant-a", max_tokens=4, seed=i) for i in range(n)], max_workers=8)
    assert all(r.ok for r in res), f"warm-up failures: {[(r.status, r.error) for r in res if not r.ok][:5]}"


@given('the memory of "{services}" is measured')
@when('the memory of "{services}" is measured again')
def step_memory(context, services):
    context.world.chaos.vars.setdefault("memory", []).append(context.world.chaos.memory(_list(services)))


@then("no measured service grew by more than {mib:d} MiB")
def step_memory_bounded(context, mib):
    from apiary_suite.load import write_metrics
    from apiary_suite.resources import growth
    before, after = context.world.chaos.vars["memory"][0], context.world.chaos.vars["memory"][-1]
    g = growth(before, after)
    write_metrics(context.world.chaos.report_dir, "memory", {"before": before, "after": after, "rss_growth_mib": g})
    assert g and all(v <= mib for v in g.values()), f"RSS growth (MiB): {g}; before {before}; after {after}"


@when('tenant "{tenant}" starts a long stream of {n:d} tokens')
def step_long_stream(context, tenant, n):
    context.world.chaos.start_named("long", prompt="a long running inference", tenant=tenant, max_tokens=n, seed=42, stream=True, timeout_s=context.world.scaled(120))


@when("/v1/jobs/{{id}} and /v1/workers are queried back to back for {t:g} seconds")
def step_query(context, t):
    context.world.chaos.query_while_streaming(t)


@then("the p99 latency of both queries was under {ms:d} ms")
def step_query_p99(context, ms):
    data = context.world.chaos.vars["queries"]
    limit = context.world.scaled(ms / 1000) * 1000
    assert data["jobs"]["count"] >= 10 and all(data[k]["p99"] < limit for k in ("jobs", "workers")), f"query latencies (ms): {data}"


@then('the queries saw the jobs "running"')
def step_query_states(context):
    assert "running" in context.world.chaos.vars["queries"]["job_states_seen"], f"states seen: {context.world.chaos.vars['queries']['job_states_seen']}"


# ---- client disconnect ---------------------------------------------------------------------------------------
@given("every worker's job counters are scraped")
def step_scrape_workers(context):
    context.world.vars["worker_metrics"] = {w: context.world.scrape(w) for w in context.world.worker_services()}


@when('tenant "{tenant}" streams a completion of {n:d} tokens and hangs up after {k:d} tokens')
def step_hang_up(context, tenant, n, k):
    c = context.world.client.complete("i will hang up", tenant=tenant, max_tokens=n, seed=3, stream=True, abort_after_tokens=k)
    assert c.aborted and c.job_id, f"the client did not hang up mid-stream: status={c.status} chunks={len(c.chunks)} job={c.job_id}"
    context.world.chaos.vars["hung_up"] = c.job_id


@then('the hung-up job is "cancelled" in /v1/jobs within {s:g} seconds')
def step_hung_up_cancelled(context, s):
    job_id = context.world.chaos.vars["hung_up"]
    context.world.wait_until(lambda: context.world.chaos.job_view(job_id).get("state") == "cancelled", s, f"job {job_id} cancelled")
    context.world.wait_event("job.cancelled", s, job_id=job_id)


@then("the worker that ran the hung-up job counted it as cancelled within {s:g} seconds")
def step_worker_cancelled(context, s):
    job = context.world.chaos.job_view(context.world.chaos.vars["hung_up"])
    w = job.get("worker_id")
    before = context.world.vars["worker_metrics"][w]
    key = ("apiary_worker_jobs_total", (("outcome", "cancelled"),))
    context.world.wait_until(lambda: context.world.scrape(w).get(key, 0) > before.get(key, 0), s, f"{w} apiary_worker_jobs_total{{outcome=cancelled}} rose")


@then("the other streams finish within {s:g} seconds with [DONE] and the mock model's output")
def step_others_done(context, s):
    done = context.world.finish_background(s)
    bad = [(c.prompt, c.status, c.done, c.error, c.exception) for c in done if not (c.done and c.error is None and c.text == generate_text(c.prompt, c.seed, c.max_tokens))]
    assert done and not bad, f"streams that did not finish cleanly: {bad}"


# ---- one-way partition -----------------------------------------------------------------------------------------
@when('every packet "{service}" sends to "{peer}" is dropped')
def step_drop_outgoing(context, service, peer):
    context.world.chaos.drop_outgoing(service, peer)


@when("the one-way drops are healed")
def step_heal_oneway(context):
    assert not (left := context.world.chaos.heal_oneway()), f"one-way heal left: {left}"


@then("every running completion succeeded with the mock model's output within {s:g} seconds")
def step_bg_ok(context, s):
    done = context.world.finish_background(s)
    bad = [(c.prompt, c.status, c.error, c.exception) for c in done if not (c.ok and c.text == generate_text(c.prompt, c.seed, c.max_tokens))]
    assert done and not bad, f"{len(bad)} of {len(done)} background completions failed: {bad[:5]}"


@then('every job of this scenario ended "completed" or with an explicit error in /v1/jobs within {s:g} seconds')
def step_terminal_explicit(context, s):
    ids = sorted({e["job_id"] for e in context.world.events.matching("job.accepted")})
    views = context.world.chaos.wait_terminal(ids, s)
    bad = {j: v for j, v in views.items() if v.get("state") != "completed" and not (v.get("error") or {}).get("code")}
    assert ids and not bad, f"jobs failed without an explicit error code: {bad}"
