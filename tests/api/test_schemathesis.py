"""schemathesis against local stacks: every check, positive and negative data, undeclared methods.

Starts `services.stack.LocalStack`s (orchestrator + 2 hives + 4 mock workers each, on 127.0.0.1), runs
the `st` CLI as subprocesses (shards over disjoint operations, at once), and asserts: at least MIN_CASES
generated cases, within DEADLINE_S, 0 failures and 0 errors, every operation of the served spec tested,
no traceback in any service log. Seed, counts, timings and the replay recipe go to
reports/schemathesis/last.json and the pytest output.

    APIARY_ST_SEED=<seed> .venv/bin/python -m pytest tests/api -q     # replay a run with its seed
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from services.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "reports" / "schemathesis"
ST = Path(sys.executable).with_name("st")
HOOKS = Path(__file__).with_name("st_hooks.py")
CONFIG = Path(__file__).with_name("schemathesis.toml")
MIN_CASES = 10_000
DEADLINE_S = float(os.environ.get("APIARY_ST_DEADLINE_S", "300"))
MAX_EXAMPLES = int(os.environ.get("APIARY_ST_MAX_EXAMPLES", "2700"))  # per operation: about 11,300 cases in all
# Shards run at once, each an `st` process on the stack it names. Provisioning gets a stack of its own: a
# fuzzed provision leaves a model "provisioning" for hours (downloads at 1 kB/s), and a completion for such
# a model rightly waits for a worker until its deadline -- on a shared stack the fuzzer would wait on those.
# A path listed nowhere runs in shard 0.
SHARDS = ({"stack": "generate", "paths": ()},
          {"stack": "generate", "paths": ("/v1/chat/completions",)},
          {"stack": "models", "paths": ("/v1/models/provision", "/v1/jobs/{id}", "/v1/models", "/v1/workers",
                                        "/v1/admin/reset", "/v1/admin/shutdown")})


@pytest.fixture(scope="module")
def stacks():
    """The stacks by name, tuned so a valid request costs little: tokens at once, downloads at 1 kB/s."""
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with contextlib.ExitStack() as started:
        running = {}
        for name in sorted({shard["stack"] for shard in SHARDS}):
            running[name] = started.enter_context(LocalStack(
                worker_env={"APIARY_TOKENS_PER_S": "0"}, hive_env={"APIARY_DOWNLOAD_BYTES_PER_S": "1000"}))
        start_s = time.monotonic() - t0
        try:
            yield running, start_s
        finally:  # keep the services' logs beside the report (each stack's own dir is removed on stop)
            for name, stack in running.items():
                shutil.rmtree(OUT / f"logs-{name}", ignore_errors=True)
                shutil.copytree(stack.workdir / "logs", OUT / f"logs-{name}")


def shard_regexes(paths: list[str]) -> list[str]:
    """One anchored --include-path-regex per shard, covering every path exactly once."""
    groups: list[list[str]] = [[] for _ in SHARDS]
    for path in paths:
        groups[next((i for i, shard in enumerate(SHARDS) if path in shard["paths"]), 0)].append(re.escape(path))
    return ["^(" + "|".join(group) + ")$" for group in groups]


def st_command(url: str, key: str, seed: int, regex: str, report: Path) -> list[str]:
    """The `st run` argv of one shard (also printed as its replay command)."""
    return [str(ST), "--config-file", str(CONFIG), "--no-color", "run", f"{url}/openapi.json",
            "-H", f"Authorization: Bearer {key}", "--checks", "all", "--mode", "all",
            "--max-examples", str(MAX_EXAMPLES), "--seed", str(seed), "--no-shrink", "--workers", "1",
            "--generation-database", "none", "--request-timeout", "10", "--include-path-regex", regex,
            "--report", "json", "--report-json-path", str(report)]


def run_shards(commands: list[list[str]], deadline_s: float) -> tuple[list[int | None], float]:
    """Run the shards at once; past the deadline kill their process groups. Returns (exit codes, seconds)."""
    env = dict(os.environ, SCHEMATHESIS_HOOKS=str(HOOKS))
    logs = [open(OUT / f"shard-{i}.log", "wb") for i in range(len(commands))]
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=OUT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
             for cmd, log in zip(commands, logs)]
    try:
        for proc in procs:
            try:
                proc.wait(max(0.01, deadline_s - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for log in logs:
            log.close()
    codes = [p.returncode if p.returncode >= 0 else None for p in procs]  # None: killed at the deadline
    return codes, time.monotonic() - t0


def read_report(path: Path) -> dict:
    """The schemathesis JSON run report of one shard ({} when it wrote none)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def failure_lines(log: Path, limit: int = 60) -> str:
    """The ERRORS / FAILURES part of a shard's output (what to read first), or its tail."""
    text = log.read_text("utf-8", "replace")
    found = [i for i in (text.find("= ERRORS ="), text.find("= FAILURES =")) if i >= 0]
    start = min(found) if found else max(0, len(text) - 3000)
    return f"--- {log}\n" + "\n".join(line[:400] for line in text[start:].splitlines()[:limit])


def traceback_logs(stacks: dict) -> list[str]:
    """stack/service names whose log has a Python traceback."""
    return [f"{label}/{name}" for label, stack in stacks.items() for name in stack.names
            if "Traceback (most recent call last)" in stack.log_path(name).read_text("utf-8", "replace")]


def replay_recipe(seed: int, key: str, commands: list[list[str]]) -> dict:
    """How to run this again: the whole test with its seed, one stored failure, one shard by hand."""
    return {"whole run": f"APIARY_ST_SEED={seed} .venv/bin/python -m pytest tests/api -q",
            "one failure": f"cd {OUT} && {ST} replay --url <API URL> -H 'Authorization: Bearer {key}'  "
                           f"(`python -m services.stack` prints an API URL; the failure's `st replay ID` is in "
                           f"shard-N.log)",
            "one shard": [f"SCHEMATHESIS_HOOKS={HOOKS} " + " ".join(f"'{a}'" if re.search(r"[ |{()$^]", a) else a
                                                                   for a in cmd) for cmd in commands]}


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 180)
def test_api_conforms_to_its_spec(stacks):
    running, start_s = stacks
    seed = int(os.environ.get("APIARY_ST_SEED") or random.SystemRandom().randrange(1, 2 ** 31))
    any_stack = next(iter(running.values()))
    spec = requests.get(any_stack.api_url + "/openapi.json", timeout=5).json()
    operations = sorted(f"{m.upper()} {p}" for p, item in spec["paths"].items() for m in item)
    regexes = shard_regexes(sorted(spec["paths"]))
    reports = [OUT / f"shard-{i}.json" for i in range(len(SHARDS))]
    for report in reports:
        report.unlink(missing_ok=True)
    commands = [st_command(running[shard["stack"]].api_url, any_stack.key, seed, rx, rp)
                for shard, rx, rp in zip(SHARDS, regexes, reports)]
    load_before, cpu_before = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN)
    codes, seconds = run_shards(commands, DEADLINE_S)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    st_cpu_s = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    shards = [read_report(r) for r in reports]
    by_shard = [s.get("test_cases", {}).get("generated", 0) for s in shards]
    tested = sum(s.get("operations", {}).get("tested", 0) for s in shards)
    failures = [f for s in shards for f in s.get("failures", [])]
    errors = [e for s in shards for e in s.get("errors", [])]
    broken = traceback_logs(running)
    summary = {
        "seed": seed, "schemathesis": next((s["schemathesis_version"] for s in shards if s), None),
        "cases": sum(by_shard), "cases_by_shard": by_shard, "seconds": round(seconds, 1),
        "st_cpu_s": round(st_cpu_s, 1), "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "stack_start_s": round(start_s, 1), "deadline_s": DEADLINE_S, "max_examples_per_operation": MAX_EXAMPLES,
        "operations": operations, "operations_tested": tested, "exit_codes": codes, "failures": failures,
        "errors": errors, "tracebacks_in": broken, "shard_paths": regexes,
        "logs": [str(OUT / f"shard-{i}.log") for i in range(len(SHARDS))], "service_logs": str(OUT / "logs-*"),
        "replay": replay_recipe(seed, any_stack.key, commands),
    }
    (OUT / "last.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nschemathesis {summary['schemathesis']} seed {seed}: {sum(by_shard)} cases in {seconds:.1f} s "
          f"(by shard {by_shard}; {st_cpu_s:.0f} s CPU; load {summary['load_average']}), {len(failures)} kinds of "
          f"failure, {len(errors)} errors; {OUT / 'last.json'}")
    print(f"replay: {summary['replay']['whole run']}\n        {summary['replay']['one failure']}")
    details = "\n".join(failure_lines(OUT / f"shard-{i}.log") for i, code in enumerate(codes) if code != 0)
    assert None not in codes, f"schemathesis did not finish within {DEADLINE_S:.0f} s (exit codes {codes})\n{details}"
    assert not failures and not errors and codes == [0] * len(codes), \
        f"schemathesis found failures (seed {seed}; exit codes {codes}):\n{details}"
    assert sum(by_shard) >= MIN_CASES, f"only {sum(by_shard)} cases (< {MIN_CASES}); raise APIARY_ST_MAX_EXAMPLES"
    assert tested == len(operations), f"{tested} of {len(operations)} operations tested: {operations}"
    assert not broken, f"Python tracebacks in the logs of {broken} (copied to {OUT}/logs-*)"
