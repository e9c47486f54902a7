"""The etcd example's image for the docker tests: apiary/etcd built by examples/etcd/build.sh (cached after
the first build); the test is skipped, with the reason, without a docker CLI, an engine or a build."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / "examples" / "etcd" / "build.sh"


def build_etcd_image() -> str:
    """The image reference build.sh printed; pytest.skip naming why when there is none."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on this machine")
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          timeout=30)
    if info.returncode != 0:
        pytest.skip(f"no reachable Docker engine: {info.stderr.strip()[-300:]}")
    started = time.monotonic()
    build = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=900)
    if build.returncode != 0:
        pytest.skip(f"the etcd image could not be built (examples/etcd/build.sh exit {build.returncode}): "
                    f"{build.stderr.strip()[-1500:]}")
    image = build.stdout.strip().splitlines()[-1]
    print(f"\n{image} ready in {time.monotonic() - started:.1f} s")
    return image
