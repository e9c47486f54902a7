"""Full-stack steps: auth, shutdown, crash recovery, provisioning, health, errors, metrics (one harness call each)."""
from behave import given, then, when

from apiary_suite import proofs
from apiary_suite.world import parse_metrics
from services.protocol import generate_text


# ---- auth ---------------------------------------------------------------------------------------
@when('an anonymous client requests a completion of "{prompt}"')
def step_anonymous(context, prompt):
    context.world.remember(context.world.client.complete(prompt, tenant=None))


@when('a client with a wrong key requests a completion of "{prompt}"')
def step_wrong_key(context, prompt):
    context.world.remember(context.world.client.complete(prompt, tenant="intruder"))


@when('tenant "{tenant}" fetches the job of the last completion')
def step_fetch_last_job(context, tenant):
    context.world.vars["job_id"] = context.world.vars.get("job_id") or context.world.last().job_id
    context.world.remember(context.world.client.get_job(context.world.vars["job_id"], tenant=tenant))


@then('the fetched job is "{state}"')
def step_fetched_state(context, state):
    assert context.world.last().json().get("state") == state, f"job: {context.world.last().json()}"


@when("clients present {n:d} distinctive wrong keys to the API and each is answered 401")
def step_present_wrong_keys(context, n):
    context.world.vars["wrong_keys"] = proofs.present_wrong_keys(context.world.client, n)
    assert all(st == [401, 401, 401] for st in context.world.vars["wrong_keys"].values()), f"wrong keys not answered 401 on every route: {context.world.vars['wrong_keys']}"


@then("no service log contains any API key or any presented wrong key")
def step_no_key_in_logs(context):
    logs = proofs.log_texts(context.world)
    assert any(text.strip() for text in logs.values()), "no service produced any log to inspect"
    assert not (found := proofs.leaked_secrets(logs, proofs.scenario_keys(context.world))), f"keys found in service logs: {found}"


# ---- shutdown -----------------------------------------------------------------------------------
@given('{n:d} streamed completions of {k:d} tokens are running for tenant "{tenant}"')
def step_running_streams(context, n, k, tenant):
    [context.world.start_completion(prompt=f"drain-{i}", tenant=tenant, max_tokens=k, seed=i, stream=True) for i in range(n)]
    context.world.wait_event("job.first_token", 5, count=n)


@when("the admin requests a cluster shutdown")
def step_shutdown(context):
    context.world.remember(context.world.client.post("/v1/admin/shutdown", tenant="admin", f="shutdown"))


@then("the shutdown request is accepted")
def step_shutdown_accepted(context):
    assert context.world.last() is not None and context.world.last().status_code in (200, 202), f"shutdown answered {context.world.last() and context.world.last().status_code}"


@then("every service exits with code 0 within {s:g} seconds")
def step_all_exit_0(context, s):
    states = context.world.wait_until(lambda: context.world.exited_services(), s, "every service exited")
    assert all(st.get("exit_code") == 0 for st in states.values()), f"exit states: {states}"


@then("every worker left before its hive, and every hive left before the orchestrator exited")
def step_shutdown_order(context):
    assert not context.world.shutdown_order_violations(), f"shutdown order: {context.world.shutdown_order_violations()}"


# ---- crash recovery -----------------------------------------------------------------------------
@given("every worker generates {n:d} tokens per second")
def step_slow_workers(context, n):
    context.world.set_all_workers(tokens_per_s=n)


@when("the worker running that job crashes at its next token")
def step_crash_running(context):
    context.world.crash_worker_of_running_job()


@then('the stream ended with an explicit "{code}" error naming the job and no [DONE]')
def step_stream_error(context, code):
    c = context.world.last()
    assert c.error and c.error.get("code") == code and c.error.get("job_id") == c.job_id and not c.done, f"stream: error={c.error} done={c.done} job={c.job_id}"
    assert c.chunks and generate_text(c.prompt, c.seed, c.max_tokens).startswith(c.text), f"streamed text {c.text!r} is not a prefix of the expected output"


@then("the crashed worker is marked lost within {s:g} seconds of the crash")
def step_marked_lost(context, s):
    ev = context.world.wait_event("worker.lost", 5, worker_id=context.world.vars["crashed"])
    assert ev["ts"] - context.world.vars["crash_at"] <= context.world.scaled(s), f"worker.lost {ev['ts'] - context.world.vars['crash_at']:.3f}s after the crash"


@then("the job was re-dispatched to another worker")
def step_redispatched(context):
    job = context.world.job(context.world.last().job_id, context.world.last().tenant)
    assert job.get("attempts", 0) >= 2 and job.get("worker_id") != context.world.vars["crashed"], f"job: {job}"
    context.world.wait_event("job.redispatched", 2, job_id=context.world.last().job_id)


# ---- provisioning -------------------------------------------------------------------------------
@when('the admin provisions model "{model}" of {size:d} bytes')
def step_provision(context, model, size):
    context.world.remember(context.world.client.post("/v1/models/provision", tenant="admin", f="provision", json_body={"model": model, "size_bytes": size}))


@given('every hive corrupts the next {n:d} downloads of model "{model}"')
def step_corrupt(context, n, model):
    [context.world.nemesis.proc.set_faults(h, corrupt_downloads={model: n}) for h in context.world.hive_services()]


@then('/v1/models lists model "{model}" within {s:g} seconds')
def step_model_listed(context, model, s):
    context.world.wait_until(lambda: context.world.model_ready(model), s, f"model {model} ready in /v1/models")


@then('the "{service:Q}" metric "{name:Q}" with {label}="{value:Q}" is at least {n:d}')
def step_metric_at_least(context, service, name, label, value, n):
    assert context.world.metric(service, name, **{label: value}) >= n, f"{service} {name}{{{label}={value}}} = {context.world.metric(service, name, **{label: value})}"


@then('some hive\'s metric "{name}" with {label}="{value}" is at least {n:d}')
def step_any_hive_metric(context, name, label, value, n):
    assert sum(context.world.metric(h, name, **{label: value}) for h in context.world.hive_services()) >= n, f"hives' {name}{{{label}={value}}} below {n}"


# ---- health and errors ------------------------------------------------------------------------
@when('worker "{worker}" reports itself unhealthy')
def step_unhealthy(context, worker):
    context.world.nemesis.proc.set_faults(worker, unhealthy=True)


@when('worker "{worker}" reports itself healthy')
def step_healthy(context, worker):
    context.world.nemesis.proc.set_faults(worker, unhealthy=False)


@when("every worker reports itself unhealthy")
def step_all_unhealthy(context):
    context.world.set_all_workers(unhealthy=True)


@when("every worker reports itself healthy")
def step_all_healthy(context):
    context.world.set_all_workers(unhealthy=False)


@then("/ready answers 503 with a reason within {s:g} seconds")
def step_not_ready(context, s):
    resp = context.world.wait_until(lambda: (lambda r: [r] if r.status_code == 503 else None)(context.world.http("orchestrator", "/ready")), s, "/ready 503")[0]
    assert resp.json().get("reason"), f"/ready 503 without a reason: {resp.text}"


@then('{n:d} completions from tenant "{tenant}" succeed and none ran on worker "{worker}"')
def step_avoid_worker(context, n, tenant, worker):
    res = [context.world.client.complete(f"avoid-{i}", tenant=tenant, max_tokens=4, seed=i) for i in range(n)]
    assert all(r.ok for r in res), f"failed: {[(r.status, r.error) for r in res if not r.ok]}"
    assert not context.world.jobs_on_worker([r.job_id for r in res], worker), f"jobs ran on {worker}: {context.world.jobs_on_worker([r.job_id for r in res], worker)}"


@given('every worker fails jobs with error "{message}"')
def step_all_error(context, message):
    context.world.set_all_workers(error=message)


@given('every worker rejects jobs with "{message}"')
def step_all_reject(context, message):
    context.world.set_all_workers(reject=message)


# ---- metrics ------------------------------------------------------------------------------------
@when('tenant "{tenant}" sends {n:d} completions of {k:d} tokens')
def step_sequential(context, tenant, n, k):
    [context.world.client.complete(f"metrics-{i}", tenant=tenant, max_tokens=k, seed=i) for i in range(n)]


@then("every service's /metrics parses as Prometheus text with apiary samples")
def step_all_scrapes(context):
    bad = {s: err for s in context.world.cluster.services if (err := context.world.scrape_problem(s))}
    assert not bad, f"unparseable or empty scrapes: {bad}"


@then('the "{service}" histogram "{name}" counted at least {n:d} more observations')
def step_histogram(context, service, name, n):
    before = sum(v for (k, _), v in context.world.vars["metrics_before"][service].items() if k == name + "_count")
    now = sum(v for (k, _), v in parse_metrics(context.world.http(service, "/metrics").text).items() if k == name + "_count")
    assert now - before >= n, f"{name}_count {before} -> {now} (wanted +{n})"
