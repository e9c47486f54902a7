"""The suite's hooks for the kit's runner (harness/suite.py names what they are): build and check Apiary's
images, make, start, tear down or keep up its compose stack, the reaper that sweeps a dead run, and the
chaos modes (--soak, --replay, --shrink). docker-compose.integration.yml names this module in its x-apiary
block (`suite: apiary_suite.entry`)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from apiary_suite.reaper import Reaper  # noqa: F401 (a hook)
from apiary_suite.run_stack import print_keep_up, start_cluster as start_stack, teardown  # noqa: F401 (hooks)
from harness.console import say
from harness.deadline import wait_with_deadline
from harness.errors import EnvironmentSetupError

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ("apiary/orchestrator", "apiary/worker-manager", "apiary/mock-worker")
BUILT_IMAGES = IMAGES + ("apiary/runtime", "apiary/deps")   # every name scripts/build-images.sh tags
BUILD_LIMIT_S = 30 * 60.0    # a cold build incl. debootstrap takes ~3.5 min here


def open_stack(run_id: str, run_dir: Path):
    """The run's compose stack, not yet started (apiary_suite/cluster.py)."""
    from apiary_suite.cluster import Cluster
    return Cluster(run_id, image_tag=os.environ.get("APIARY_IMAGE_TAG", "local"), run_dir=run_dir)


def run_mode(args, settings, stack, run_dir: Path, meta: dict, out) -> int:
    """--soak, --replay or --shrink against the started stack (apiary_suite/soak_run.py)."""
    from apiary_suite.soak_run import run_mode as play
    return play(args, settings, stack, run_dir, meta, out)


def built_refs(tag: str) -> list[str]:
    """The refs scripts/build-images.sh gives with this tag."""
    return [f"{image}:{tag}" for image in BUILT_IMAGES]


def build_images(run_dir: Path, build: bool) -> dict[str, str]:
    """Build (cached) or check the images; returns image ids. EnvironmentSetupError names what failed."""
    import docker
    if build:
        say("Building images (wheelhouse, base, 3 services; cached layers are reused)...")
        log = run_dir / "build.log"
        start = time.monotonic()
        with open(log, "w") as fh:
            env = dict(os.environ, APIARY_HOST_PYTHON=os.environ.get("APIARY_HOST_PYTHON", sys.executable))
            proc = subprocess.Popen([str(ROOT / "scripts" / "build-images.sh")], cwd=ROOT, env=env, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            rc, overran = wait_with_deadline(proc, BUILD_LIMIT_S, grace_s=10)
        if overran:
            raise EnvironmentSetupError("build timed out", f"scripts/build-images.sh did not finish within "
                                        f"{BUILD_LIMIT_S / 60:.0f} min and was stopped (full log {log})")
        if rc != 0:
            tail = "\n".join(log.read_text().splitlines()[-25:])
            raise EnvironmentSetupError("build failed", f"scripts/build-images.sh exited {rc} (full log {log}):\n{tail}")
        say(f"Images ready in {time.monotonic() - start:.1f}s")
    client = docker.from_env()
    ids = {}
    for image in IMAGES:
        try:
            ids[image] = client.images.get(f"{image}:{os.environ.get('APIARY_IMAGE_TAG', 'local')}").id
        except docker.errors.ImageNotFound:
            raise EnvironmentSetupError("image missing", f"{image} is not built (run without --no-build)") from None
    return ids
