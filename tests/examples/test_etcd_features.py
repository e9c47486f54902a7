"""The etcd example's behave features (examples/etcd/features/, tagged @example) run as the issue asks,
`./run-integration-tests.sh --compose examples/etcd/docker-compose.yml --tags @example`: through the kit's
generic step library and hooks, exit 0, every scenario passed in the run's summary.json and the gate holds,
nothing labelled with the run left afterwards, within 130 s once the image exists. `--list` needs no engine."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.examples.etcd_image import build_etcd_image

from harness.errors import EnvironmentSetupError
from harness.stack.compose import docker_client
from harness.sweep import leftovers
from harness.wait import scaled

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "etcd"
WALL_S = 130.0           # the whole behave run once the image exists: build check, up, 4 scenarios, down (77 s)
SCENARIOS = 4            # partition, stale (the selftest), rejoin, the seeded soak (37 s of it)


RUNNER = ROOT / "run-integration-tests.sh"
COMPOSE = EXAMPLE / "docker-compose.yml"


def test_list_shows_the_example_scenarios_without_starting_anything():
    proc = subprocess.run([str(RUNNER), "--compose", str(COMPOSE), "--tags", "@example", "--list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{SCENARIOS} scenario(s) in {SCENARIOS} feature file(s) selected" in proc.stdout, proc.stdout


def test_a_compose_file_without_an_x_apiary_block_is_a_usage_error(tmp_path):
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  a: {image: busybox}\n")
    proc = subprocess.run([str(RUNNER), "--compose", str(bad), "--list"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 4 and "no x-apiary: block" in proc.stderr and str(bad) in proc.stderr, proc.stderr


def test_the_etcd_features_pass_through_the_runner_and_the_kit_steps(tmp_path):
    build_etcd_image()
    try:
        client = docker_client()
    except EnvironmentSetupError as exc:
        pytest.skip(f"the kit cannot reach Docker: {exc}")
    env = {k: v for k, v in os.environ.items() if k not in ("APIARY_RUN_ID", "APIARY_KIT_RUN_ID")}
    cmd = [str(RUNNER), "--compose", str(COMPOSE), "--tags", "@example", "--report-dir", str(tmp_path)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=scaled(WALL_S) + 180)
    wall = time.monotonic() - started
    run_dir = (tmp_path / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    left = leftovers(client, summary["run_id"])
    print(f"\n[etcd-features] run {summary['run_id']}: exit {proc.returncode} in {wall:.1f} s; left {left}\n"
          f"{proc.stdout[-3000:]}", flush=True)
    assert proc.returncode == 0, f"runner exit {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    statuses = {sc["scenario"]: sc["status"] for sc in summary["scenarios"]}
    assert len(statuses) == SCENARIOS and set(statuses.values()) == {"passed"}, statuses
    assert summary["gate"]["passed"] and summary["compose_file"] == str(COMPOSE), summary["gate"]
    assert left == {"containers": [], "networks": [], "volumes": []}, left
    assert wall <= scaled(WALL_S), f"the run took {wall:.1f} s (bound {scaled(WALL_S):.0f} s)"
