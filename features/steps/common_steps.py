"""Shared steps over harness.World: cluster readiness, completions, responses, events, /v1 views, metrics, checks.

Every step is one call into the harness; time limits in the wording are scaled by the run's multiplier.
"""
import parse
from behave import given, register_type, then, when

from apiary_suite import checker, proofs
from apiary_suite.client import tenant_specs
from apiary_suite.world import error_of, metric_sum, status_of
from services.protocol import generate_text, generate_token


@parse.with_pattern(r'[^"]*')
def _quoted(text):
    return text


register_type(Q=_quoted)   # a quoted word that never swallows a closing quote


def _tenants(text):
    return [t.strip() for t in text.split(",") if t.strip()]


# ---- cluster state ------------------------------------------------------------------------------
@given("the cluster is ready with {n:d} workers within {s:g} seconds")
def step_cluster_ready(context, n, s):
    context.world.wait_until(lambda: len(context.world.ready_workers()) >= n, s, f"{n} ready workers in /v1/workers")


@given('the "{service}" metrics are scraped')
def step_scrape(context, service):
    context.world.vars.setdefault("metrics_before", {})[service] = context.world.scrape(service)


# ---- completions --------------------------------------------------------------------------------
@when('tenant "{tenant}" requests a completion of "{prompt}" with {n:d} tokens and seed {seed:d}')
def step_complete(context, tenant, prompt, n, seed):
    context.world.remember(context.world.client.complete(prompt, tenant=tenant, max_tokens=n, seed=seed))


@when('tenant "{tenant}" streams a completion of "{prompt}" with {n:d} tokens and seed {seed:d}')
def step_stream(context, tenant, prompt, n, seed):
    context.world.remember(context.world.client.complete(prompt, tenant=tenant, max_tokens=n, seed=seed, stream=True))


@when('tenant "{tenant}" requests a chat completion of "{prompt}" with {n:d} tokens and seed {seed:d}')
def step_chat(context, tenant, prompt, n, seed):
    context.world.remember(context.world.client.complete(prompt, tenant=tenant, max_tokens=n, seed=seed, chat=True))


@when('tenant "{tenant}" streams a chat completion of "{prompt}" with {n:d} tokens and seed {seed:d}')
def step_chat_stream(context, tenant, prompt, n, seed):
    context.world.remember(context.world.client.complete(prompt, tenant=tenant, max_tokens=n, seed=seed,
                                                         chat=True, stream=True))


@when('the official openai client of tenant "{tenant}" streams a completion of "{prompt}" with {n:d} tokens and seed {seed:d}')
def step_openai_stream(context, tenant, prompt, n, seed):
    context.world.remember(context.world.client.openai_complete(prompt, tenant, max_tokens=n, seed=seed, stream=True))


@when('tenant "{tenant}" requests a completion of model "{model}" with {n:d} tokens')
def step_complete_model(context, tenant, model, n):
    context.world.remember(context.world.client.complete(f"model {model}", tenant=tenant, max_tokens=n, model=model))


@when('tenant "{tenant}" starts streaming a completion of "{prompt}" with {n:d} tokens and seed {seed:d}')
def step_start_stream(context, tenant, prompt, n, seed):
    context.world.start_completion(prompt=prompt, tenant=tenant, max_tokens=n, seed=seed, stream=True)


@when('tenant "{tenant}" starts a completion of "{prompt}" with {n:d} tokens and seed {seed:d}')
def step_start_complete(context, tenant, prompt, n, seed):
    context.world.start_completion(prompt=prompt, tenant=tenant, max_tokens=n, seed=seed)


@then("the running completions finish within {s:g} seconds, each with the mock model's output")
def step_finish_exact(context, s):
    assert not (bad := proofs.finish_problems(context.world.finish_background(s), generate_text, allow_error=False)), f"completions that did not end with the exact text: {bad}"


@then("the running completions finish within {s:g} seconds, each with the mock model's output or an explicit error")
def step_finish_explicit(context, s):
    assert not (bad := proofs.finish_problems(context.world.finish_background(s), generate_text, allow_error=True)), f"completions that ended neither with the exact text nor an explicit error: {bad}"


@when('{n:d} completions of {k:d} tokens are sent at once by tenants "{tenants}" over {c:d} connections')
def step_many(context, n, k, tenants, c):
    context.world.client.run_many(tenant_specs(n, _tenants(tenants), max_tokens=k), max_workers=c)


@when('{n:d} completions of {k:d} tokens are sent at once by tenants "{tenants}" over {c:d} connections, '
      'every {m:d}th streamed')
def step_many_streamed(context, n, k, tenants, c, m):
    context.world.client.run_many(tenant_specs(n, _tenants(tenants), stream_every=m, max_tokens=k), max_workers=c)


@when('tenant "{tenant}" fetches that job')
def step_fetch_job(context, tenant):
    context.world.remember(context.world.client.get_job(context.world.vars["job_id"], tenant=tenant))


# ---- response assertions ------------------------------------------------------------------------
@then("the response status is {code:d}")
def step_status(context, code):
    assert status_of(context.world.last()) == code, f"status {status_of(context.world.last())} != {code}: {error_of(context.world.last())}"


@then('the error message mentions "{text}"')
def step_error_mentions(context, text):
    assert text.lower() in str(error_of(context.world.last()).get("message", "")).lower(), f"error {error_of(context.world.last())} does not mention {text!r}"


@then('the error code is "{code}"')
def step_error_code(context, code):
    assert error_of(context.world.last()).get("code") == code, f"error {error_of(context.world.last())} has no code {code!r}"


@then("the completion text is the mock model's output")
def step_text_exact(context):
    c = context.world.last()
    assert c.ok and c.text == generate_text(c.prompt, c.seed, c.max_tokens), f"status={c.status} error={c.error} text={c.text!r} expected={generate_text(c.prompt, c.seed, c.max_tokens)!r}"


@then("the stream ended with [DONE] and no error event")
def step_stream_done(context):
    c = context.world.last()
    assert c.stream and c.done and c.error is None, f"stream done={c.done} error={c.error} status={c.status} exc={c.exception}"


@then("the stream delivered its tokens in {n:d} or more chunks of whole tokens in order, the first at least {s:g} seconds before the last")
def step_stream_chunks(context, n, s):
    c = context.world.last()
    assert not (bad := proofs.stream_problems(c.chunks, c.token_times, [generate_token(c.prompt, c.seed, i) for i in range(c.max_tokens)], n, s)), f"stream of {len(c.chunks)} chunks at {[round(t, 3) for t in c.token_times]}: {bad}"


@then("the response carries the job id in the X-Apiary-Job-Id header and the body")
def step_job_id(context):
    c = context.world.last()
    assert c.headers.get("X-Apiary-Job-Id") and c.headers.get("X-Apiary-Job-Id") == (c.body or {}).get("id"), f"header={c.headers.get('X-Apiary-Job-Id')} body id={(c.body or {}).get('id')}"
    context.world.vars["job_id"] = c.job_id


@then('the response body has object "{obj}"')
def step_body_object(context, obj):
    assert (context.world.last().body or {}).get("object") == obj, f"body: {context.world.last().body}"


@then("the response has a WWW-Authenticate header")
def step_www_auth(context):
    assert "bearer" in context.world.last().headers.get("WWW-Authenticate", "").lower(), f"headers: {context.world.last().headers}"


@then('the job of the last completion is "{state}" in /v1/jobs for tenant "{tenant}"')
def step_job_state(context, state, tenant):
    job = context.world.job(context.world.last().job_id, tenant)
    assert job.get("state") == state and job.get("worker_id") in context.world.worker_services(), f"job: {job}"


# ---- events -------------------------------------------------------------------------------------
@then('a "{topic}" event for the last job is published within {s:g} seconds')
def step_event_job(context, topic, s):
    context.world.wait_event(topic, s, job_id=context.world.last().job_id)


@then('a "{topic}" event for worker "{worker}" is published within {s:g} seconds')
def step_event_worker(context, topic, worker, s):
    context.world.wait_event(topic, s, since=context.world.vars.get("mark", 0), worker_id=worker)


@then('a "{topic}" event for hive "{hive}" is published within {s:g} seconds')
def step_event_hive(context, topic, hive, s):
    context.world.wait_event(topic, s, hive_id=hive)


@then('a "{topic}" event for model "{model}" is published within {s:g} seconds')
def step_event_model(context, topic, model, s):
    context.world.wait_event(topic, s, model=model)


@then('a "{topic}" event is published within {s:g} seconds')
def step_event_any(context, topic, s):
    context.world.wait_event(topic, s)


# ---- cluster views ------------------------------------------------------------------------------
@then("/v1/workers lists these workers")
def step_workers_table(context):
    view = {w["id"]: w for w in context.world.workers_view().get("workers", [])}
    wrong = [(r["worker"], view.get(r["worker"])) for r in context.table if not view.get(r["worker"]) or view[r["worker"]].get("hive") != r["hive"] or r["model"] not in ([view[r["worker"]].get("model")] + list(view[r["worker"]].get("models") or []))]
    assert not wrong, f"workers missing or wrong in /v1/workers: {wrong}; listed: {sorted(view)}"


@then('/v1/workers shows worker "{worker}" as "{state}" within {s:g} seconds')
def step_worker_state(context, worker, state, s):
    context.world.wait_until(lambda: (context.world.worker(worker) or {}).get("state") == state, s, f"{worker} {state} in /v1/workers")


@then("every worker in /v1/workers has a heartbeat age under {s:g} seconds")
def step_heartbeat_age(context, s):
    old = [(w["id"], w.get("last_heartbeat_age_s")) for w in context.world.workers_view().get("workers", []) if not isinstance(w.get("last_heartbeat_age_s"), (int, float)) or w["last_heartbeat_age_s"] >= context.world.scaled(s)]
    assert not old, f"workers with stale or missing heartbeat age: {old}"


@then('/ready answers {code:d} within {s:g} seconds')
def step_ready(context, code, s):
    context.world.wait_until(lambda: context.world.http("orchestrator", "/ready").status_code == code, s, f"/ready {code}")


@then('"{service}" answers /health with 200')
def step_health(context, service):
    assert context.world.http(service, "/health").status_code == 200, f"{service} /health not 200"


# ---- metrics ------------------------------------------------------------------------------------
@then('the "{service:Q}" metric "{name:Q}" rose by at least {n:d}')
def step_metric_rose(context, service, name, n):
    before, now = metric_sum(context.world.vars["metrics_before"][service], name), context.world.metric(service, name)
    assert now - before >= n, f"{service} {name}: {before} -> {now} (wanted +{n})"


@then('the "{service:Q}" metric "{name:Q}" with {label}="{value:Q}" rose by at least {n:d}')
def step_metric_label_rose(context, service, name, label, value, n):
    before, now = metric_sum(context.world.vars["metrics_before"][service], name, **{label: value}), context.world.metric(service, name, **{label: value})
    assert now - before >= n, f"{service} {name}{{{label}={value}}}: {before} -> {now} (wanted +{n})"


@then('the "{service:Q}" metric "{name:Q}" with {label}="{value:Q}" is {n:d}')
def step_metric_label_is(context, service, name, label, value, n):
    assert context.world.metric(service, name, **{label: value}) == n, f"{service} {name}{{{label}={value}}} = {context.world.metric(service, name, **{label: value})}"


# ---- history checks -----------------------------------------------------------------------------
@then("every completion succeeded")
def step_all_ok(context):
    context.world.check("all_ok", checker.check_all_ok(context.world.history))


@then("every completion's text is the mock model's output")
def step_all_text(context):
    context.world.check("text_matches", checker.check_text_matches(context.world.history, generate_text))


@then("no completion was lost or duplicated")
def step_no_loss(context):
    context.world.check("no_loss_no_duplicates", checker.check_no_loss_no_duplicates(context.world.history))


@then("every job completed exactly once with one job.completed event each within {s:g} seconds")
def step_exactly_once(context, s):
    context.world.wait_until(lambda: checker.check_exactly_once(context.world.history, context.world.events.events)["valid"], s, "exactly one job.completed event per ok job")
    context.world.check("exactly_once", checker.check_exactly_once(context.world.history, context.world.events.events))


@then("the jobs were spread over all workers")
def step_spread(context):
    context.world.check("spread", checker.check_spread(context.world.ops_with_workers(), context.world.worker_services()))


@then("the jobs were spread over all workers with no worker getting more than {r:g} times the jobs of another")
def step_spread_fair(context, r):
    context.world.check("spread_fair", checker.check_spread(context.world.ops_with_workers(), context.world.worker_services(), max_ratio=r))


@then("no job was visible to another tenant")
def step_isolation(context):
    context.world.check("tenant_isolation", checker.check_tenant_isolation(context.world.history))


@when('every tenant of "{tenants}" fetches every job of this scenario')
def step_read_across(context, tenants):
    context.world.vars["cross_reads"] = proofs.read_jobs_across(context.world.client, _tenants(tenants))


@then('each of "{tenants}" read its own jobs, was answered 404 for every job of the others, and got its own prompt\'s text')
def step_cross_reads(context, tenants):
    context.world.check("cross_tenant_reads", proofs.check_cross_reads(context.world.history, _tenants(tenants), generate_text))
