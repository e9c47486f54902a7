"""behave hooks: attach to (or start) the run's stack, reset it between scenarios, hang a World on the
context, fail a scenario whose services logged a traceback or that outlives its limit, and write a
bundle for every failure."""
from __future__ import annotations

import json
import time
from pathlib import Path

from behave.fixture import fixture, use_fixture_by_tag

from apiary_suite.stackops import TRACEBACK
from harness.deadline import SCENARIO_LIMIT_S, ScenarioWatchdog
from harness.errors import EnvironmentSetupError
from apiary_suite.gather import attach_to_allure, bundle_dir, failed_step_text, write_bundle, write_timeline
from harness.settings import Settings
from apiary_suite.run_stack import open_cluster
from apiary_suite.world import World

FAILED = ("failed", "error", "hook_error", "undefined", "cleanup_error")
MAX_FAILED_RESETS = 3


def record(context, name: str, entry: dict) -> None:
    """Append a JSON line to <run dir>/<name> (read by the runner for summary.json)."""
    with open(Path(context.settings.report_dir) / name, "a") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")


@fixture
def fresh_stack(context):
    """A new stack for the tagged feature (or scenario)."""
    context.cluster.recreate()
    yield context.cluster


FIXTURES = {"fixture.fresh_stack": fresh_stack, "fresh_stack": fresh_stack}


def before_all(context):
    context.settings = Settings.from_env()
    context.watchdog = ScenarioWatchdog(SCENARIO_LIMIT_S * context.settings.timeout_multiplier,
                                        Path(context.settings.report_dir) / "stacks")
    try:
        context.cluster = open_cluster(context.settings)
    except EnvironmentSetupError as exc:
        (Path(context.settings.report_dir) / "env-error.json").write_text(
            json.dumps({"what": exc.what, "detail": exc.detail}))
        raise


def before_tag(context, tag):
    if tag in FIXTURES:
        return use_fixture_by_tag(tag, context, FIXTURES)


def before_scenario(context, scenario):
    context.world = None
    if context.settings.backend != "docker" and "container" in scenario.effective_tags:
        reason = "needs container-level faults (@container): skipped on the local backend"
        record(context, "skips.jsonl", {"feature": scenario.feature.name, "scenario": scenario.name, "reason": reason,
                                        "tags": sorted(scenario.effective_tags)})
        scenario.skip(reason)
        return
    context.scenario_started = time.time()
    # a failed reset still gets a bundle: a World with no cluster holds nothing and reads no (maybe dead) stack
    context.world = World(None, context.settings)
    try:
        context.reset_s = context.cluster.reset()
        context.failed_resets = 0
    except Exception:
        context.failed_resets = getattr(context, "failed_resets", 0) + 1
        if context.failed_resets >= MAX_FAILED_RESETS:   # a dead stack: stop instead of failing slowly
            context._runner.abort(reason=f"the stack could not be reset {MAX_FAILED_RESETS} times in a row")
        raise
    context.world = World(context.cluster, context.settings)
    context.watchdog.arm(scenario.name)


def after_scenario(context, scenario):
    context.watchdog.disarm()
    world = getattr(context, "world", None)
    if world is None:
        return
    tracebacks = context.cluster.traceback_services(context.scenario_started)
    failed = scenario.status.name in FAILED or bool(tracebacks)
    if failed:
        write_failure_bundle(context, scenario, world, tracebacks)
    close_errors = world.close()
    context.world = None
    if tracebacks:
        raise AssertionError(f"{TRACEBACK!r} in the log of {', '.join(sorted(tracebacks))} during this scenario")
    if close_errors:   # e.g. a crashed worker cannot take `PUT /faults`; the next reset() heals and verifies
        record(context, "close-errors.jsonl", {"feature": scenario.feature.name, "scenario": scenario.name,
                                               "errors": [str(e)[:500] for e in close_errors]})


def write_failure_bundle(context, scenario, world, tracebacks: dict) -> None:
    """Bundle under failures/<feature>/<scenario>/, recorded in failures.jsonl and linked from the HTML."""
    run_dir = Path(context.settings.report_dir)
    path = bundle_dir(run_dir, scenario.feature.name, scenario.name)
    try:
        artifacts = world.artifacts()
    except Exception as exc:  # noqa: BLE001 - the bundle says why the world gave nothing
        artifacts = {"world-artifacts-error.txt": repr(exc)}
    extra = {"tracebacks.txt": "\n\n".join(f"=== {s}\n{t}" for s, t in tracebacks.items())} if tracebacks else {}
    text = failed_step_text(scenario)
    if tracebacks:
        text += f"\nTraceback in service logs: {', '.join(sorted(tracebacks))} (see tracebacks.txt)\n"
    write_bundle(path, context.cluster, context.scenario_started - 0.5, text, artifacts, extra)
    attach_to_allure(path)
    if "chaos" in scenario.effective_tags and getattr(world, "history", None) is not None:
        write_timeline(path, [world.history.ops, world.faults.ops], world.events.events if world.events else [],
                       f"{scenario.feature.name} › {scenario.name}")
    rel = str(path.relative_to(run_dir))
    step = next((s for s in scenario.all_steps if s.status.name in FAILED), None)
    record(context, "failures.jsonl", {
        "feature": scenario.feature.name, "scenario": scenario.name, "location": str(scenario.location),
        "status": scenario.status.name if not tracebacks else "traceback", "bundle": rel,
        "step": f"{step.keyword} {step.name}" if step else None,
        "error": str(step.error_message or "")[-600:] if step else text[-600:], "tags": sorted(scenario.effective_tags)})
    for formatter in getattr(context._runner, "formatters", []):
        if type(formatter).__name__ == "PrettyHTMLFormatter":
            formatter.embed("link", [[rel + "/", f"failure bundle: {rel}"]], caption="Failure bundle")


def after_all(context):
    cluster = getattr(context, "cluster", None)
    if cluster is not None and context.settings.backend == "local" and not context.settings.keep_up:
        cluster.down()
