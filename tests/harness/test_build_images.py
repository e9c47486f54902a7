"""scripts/build-images.sh's choice of base: a BASE_IMAGE that is local is used as is; one that is neither
local nor pullable (a registry on a closed loopback port) gets the bootstrapped Debian base. Either way the
three images are built on it: non-root, with a HEALTHCHECK, the base recorded in a label."""
import os
import secrets
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_IMAGES = ("apiary/orchestrator", "apiary/worker-manager", "apiary/mock-worker")

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def build(base: str, tag: str) -> str:
    """Run build-images.sh with that base and image tag; returns its log (stderr), failing on a bad exit."""
    env = dict(os.environ, APIARY_BASE_IMAGE=base, APIARY_IMAGE_TAG=tag, APIARY_PULL_TIMEOUT_S="10")
    proc = subprocess.run([str(ROOT / "scripts" / "build-images.sh")], env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, f"build-images.sh exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stderr


def remove_tags(client, tag: str, extra: list[str]) -> None:
    """Remove this test's image tags (the layers stay shared with the run's own images)."""
    for ref in [f"{i}:{tag}" for i in (*SERVICE_IMAGES, "apiary/runtime", "apiary/deps")] + extra:
        try:
            client.images.remove(ref)
        except Exception:  # noqa: BLE001 - already gone
            pass


def test_unreachable_base_is_bootstrapped_and_a_local_base_is_used_as_is(docker_engine, stack_images):
    """Unpullable base → '(bootstrapped)'; that base under a new local name → '(local)', no bootstrap."""
    tag = "t" + secrets.token_hex(3)
    local_base = f"apiary-test-base:{tag}"
    try:
        log = build(f"127.0.0.1:9/apiary-missing:{tag}", tag)
        assert "neither local nor pullable: bootstrapping" in log and "(bootstrapped)" in log, log
        bootstrapped = docker_engine.images.get(f"apiary/runtime:{tag}").labels["io.apiary.base"]
        assert bootstrapped.startswith("apiary-base"), bootstrapped
        docker_engine.images.get(bootstrapped).tag(local_base)

        log = build(local_base, tag)
        assert f"base {local_base} (local)" in log and "bootstrapping" not in log, log
        for name in SERVICE_IMAGES:
            image = docker_engine.images.get(f"{name}:{tag}")
            assert image.labels["io.apiary.base"] == local_base, (name, image.labels)
            assert image.attrs["Config"]["User"] == "apiary", name
            assert image.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD", name
    finally:
        remove_tags(docker_engine, tag, [local_base])
