"""scripts/build-images.sh's choice of base: a BASE_IMAGE that is local is used as is; one that is neither
local nor pullable (a registry on a closed loopback port) gets the bootstrapped Debian base. Either way the
three images are built on it: non-root, with a HEALTHCHECK, the base recorded in a label."""
import secrets

import pytest

from apiary_suite.entry import IMAGES, build_images, built_refs
from harness.sweep import remove_image_refs

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def build(monkeypatch, run_dir, base: str, tag: str) -> str:
    """The runner's build (scripts/build-images.sh) with that base and image tag; returns its log."""
    monkeypatch.setenv("APIARY_BASE_IMAGE", base)
    monkeypatch.setenv("APIARY_IMAGE_TAG", tag)
    monkeypatch.setenv("APIARY_PULL_TIMEOUT_S", "10")
    run_dir.mkdir()
    build_images(run_dir, True)   # EnvironmentSetupError (with the log's tail) when the build fails
    return (run_dir / "build.log").read_text()


def test_unreachable_base_is_bootstrapped_and_a_local_base_is_used_as_is(docker_engine, stack_images, monkeypatch,
                                                                          tmp_path):
    """Unpullable base → '(bootstrapped)'; that base under a new local name → '(local)', no bootstrap."""
    tag = "t" + secrets.token_hex(3)
    local_base = f"apiary-test-base:{tag}"
    try:
        log = build(monkeypatch, tmp_path / "unreachable", f"127.0.0.1:9/apiary-missing:{tag}", tag)
        assert "neither local nor pullable: bootstrapping" in log and "(bootstrapped)" in log, log
        bootstrapped = docker_engine.images.get(f"apiary/runtime:{tag}").labels["io.apiary.base"]
        assert bootstrapped.startswith("apiary-base"), bootstrapped
        docker_engine.images.get(bootstrapped).tag(local_base)

        log = build(monkeypatch, tmp_path / "local", local_base, tag)
        assert f"base {local_base} (local)" in log and "bootstrapping" not in log, log
        for name in IMAGES:
            image = docker_engine.images.get(f"{name}:{tag}")
            assert image.labels["io.apiary.base"] == local_base, (name, image.labels)
            assert image.attrs["Config"]["User"] == "apiary", name
            assert image.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD", name
    finally:
        remove_image_refs(docker_engine, built_refs(tag) + [local_base])
