"""The etcd example's behave features (examples/etcd/features/, tagged @example) run through the kit's
generic step library and hooks in a behave subprocess: exit 0, every scenario passed (read from behave's JSON
report), nothing labelled with the run id left afterwards, within 90 s once the image exists."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import EnvironmentSetupError
from harness.stack.compose import docker_client
from harness.sweep import leftovers
from harness.wait import scaled

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "etcd"
FEATURES = EXAMPLE / "features"
WALL_S = 90.0            # the whole behave run once the image exists: build check, up, 3 scenarios, down
SCENARIOS = 3            # partition, stale (the selftest), rejoin


def build_image() -> None:
    """apiary/etcd built by examples/etcd/build.sh (cached), so the timed run below only checks it; skip
    without an engine or a build."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on this machine")
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          timeout=30)
    if info.returncode != 0:
        pytest.skip(f"no reachable Docker engine: {info.stderr.strip()[-300:]}")
    build = subprocess.run([str(EXAMPLE / "build.sh")], capture_output=True, text=True, timeout=900)
    if build.returncode != 0:
        pytest.skip(f"the etcd image could not be built (build.sh exit {build.returncode}): {build.stderr[-1500:]}")


def scenario_statuses(report: Path) -> dict[str, str]:
    """scenario name -> status, from behave's JSON formatter output."""
    features = json.loads(report.read_text() or "[]")
    return {el["name"]: el.get("status") for f in features for el in f.get("elements", [])
            if el.get("type") == "scenario"}


def test_the_etcd_features_pass_through_the_kit_steps(tmp_path):
    build_image()
    try:
        client = docker_client()
    except EnvironmentSetupError as exc:
        pytest.skip(f"the kit cannot reach Docker: {exc}")
    run_id = f"kitbh-{secrets.token_hex(3)}"
    report = tmp_path / "behave.json"
    env = {k: v for k, v in os.environ.items() if k != "APIARY_RUN_ID"}
    env.update(PYTHONPATH=str(ROOT), APIARY_KIT_RUN_ID=run_id)
    cmd = [sys.executable, "-m", "behave", str(FEATURES.relative_to(ROOT)), "--tags", "@example",
           "-f", "json", "-o", str(report), "-f", "plain", "--no-capture"]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=scaled(WALL_S) + 120)
    finally:
        left = leftovers(client, run_id)
    wall = time.monotonic() - started
    print(f"\n[etcd-features] run {run_id}: exit {proc.returncode} in {wall:.1f} s; left {left}\n"
          f"{proc.stdout[-4000:]}", flush=True)
    assert proc.returncode == 0, f"behave exit {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    statuses = scenario_statuses(report)
    assert len(statuses) == SCENARIOS and set(statuses.values()) == {"passed"}, statuses
    assert left == {"containers": [], "networks": [], "volumes": []}, left
    assert wall <= scaled(WALL_S), f"the features took {wall:.1f} s (bound {scaled(WALL_S):.0f} s)"
