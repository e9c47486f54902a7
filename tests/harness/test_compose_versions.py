"""Both Compose generations bring the same stack up (v2: harness-ordered start; v1: `up -d`) and down clean."""
import secrets
import shutil

import pytest
import requests

from apiary_suite.cluster import COMPOSE_FILE, Cluster
from harness.compose import LOCAL_COMPOSE_V2, compose_major
from harness.sweep import leftovers
from harness.startup import dependency_levels

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def compose_of(major: int) -> list[str] | None:
    """A compose command of that major version on this machine, or None."""
    candidates = [["docker", "compose"], [str(LOCAL_COMPOSE_V2)]] if major == 2 else [["docker-compose"]]
    for cmd in candidates:
        if shutil.which(cmd[0]) and compose_major(cmd) == major:
            return cmd
    return None


@pytest.mark.parametrize("major", [2, 1], ids=["compose-v2", "compose-v1"])
def test_stack_comes_up_wired_and_goes_down_clean(docker_engine, stack_images, major):
    """Every service answers /health when up() returns, Docker's HEALTHCHECK flags them all healthy, 4 workers in
    2 hives, hives on both networks under their service alias; nothing left."""
    cmd = compose_of(major)
    if cmd is None:
        pytest.skip(f"no Compose v{major} on this machine (v2: scripts/get-compose-v2.sh)")
    run_id = f"cv{major}-{secrets.token_hex(3)}"
    cluster = Cluster(run_id, compose=cmd)
    try:
        cluster.up(120)
        assert cluster.probe_health() == ([], [])
        cluster.wait_reported_healthy(15)   # the image's HEALTHCHECK (one check interval behind /health)
        assert {s: cluster.inspect(s).get("health") for s in cluster.services} == {s: "healthy" for s in cluster.services}
        workers = cluster.wait_ready(30)
        assert len([w for w in workers["workers"] if w["state"] == "ready"]) == 4
        for hive in ("hive-a", "hive-b"):
            nets = cluster.inspect(hive)["networks"]
            for short in ("control", f"{hive}-net"):
                assert hive in nets[cluster.network_name(short)]["aliases"], (hive, short, nets)
        if major == 2:   # the harness started it: level by level, in depends_on order
            assert [lvl["services"] for lvl in cluster.startup] == dependency_levels(COMPOSE_FILE)
        reply = requests.get(cluster.api_url + "/health", timeout=5)
        assert reply.status_code == 200
    finally:
        cluster.down()
    assert leftovers(docker_engine, run_id) == {"containers": [], "networks": [], "volumes": []}
