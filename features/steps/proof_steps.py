"""Thens that prove a fault or a figure is real: the long stream spread over time, the stress p99 as
recorded in the run's chaos-metrics.jsonl, packets dropped by a loss rule and jobs the lossy worker
carried. One call each into apiary_suite.proofs."""
from pathlib import Path

from behave import then

from apiary_suite import proofs
from apiary_suite.world import setting
from services.protocol import generate_text, generate_token


@then("the long stream finishes within {s:g} seconds with [DONE] and the exact text, its tokens in order spread over at least {m:g} seconds")
def step_long_stream_spread(context, s, m):
    c = context.world.remember(context.world.chaos.join_named("long", s))
    assert c.done and c.error is None and c.text == generate_text(c.prompt, c.seed, c.max_tokens), f"done={c.done} error={c.error} exc={c.exception} chunks={len(c.chunks)}"
    assert not (bad := proofs.stream_problems(c.chunks, c.token_times, [generate_token(c.prompt, c.seed, i) for i in range(c.max_tokens)], c.max_tokens // 2, m)), f"long stream: {bad}"


@then("the p99 latency of that load is under {ms:d} ms and is the figure recorded in the run's chaos-metrics.jsonl")
def step_stress_recorded(context, ms):
    path = Path(setting(context.world.settings, "report_dir", ".")) / "chaos-metrics.jsonl"
    assert not (bad := proofs.stress_record_problems(path.read_text() if path.is_file() else "", proofs.completion_latencies(context.world.history), context.world.scaled(ms))), f"{path}: {bad}"


@then('the random-loss rule in "{service}" dropped at least {n:d} packets')
def step_loss_dropped(context, service, n):
    assert (ev := proofs.loss_evidence(context.world, service))["dropped_packets"] >= n, f"{service}: random-loss DROP rules counted {ev['dropped_packets']} packets (wanted >= {n})"


@then('"{worker}" completed at least {n:d} of those jobs')
def step_worker_carried(context, worker, n):
    assert (done := proofs.jobs_completed_on(context.world.history.ops, context.world.events.events, worker)) >= n, f"{worker} completed {done} of the scenario's jobs (wanted >= {n})"
