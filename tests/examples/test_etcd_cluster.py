"""A real three-member etcd cluster (examples/etcd/) under the register workload: it comes up healthy with one
leader, five clients read, write and compare-and-set over all three members for ~5 s, and the history is
linearizable by the kit's checker. The cluster is always taken down (`down -v`), also on failure."""
from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.examples.etcd_image import build_etcd_image

from examples.etcd.adapter import EtcdClient, RegisterWorkload
from harness.checkers.linearizable import check_register
from harness.wait import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "etcd"
COMPOSE_FILE = EXAMPLE / "docker-compose.yml"
MEMBERS = ("etcd1", "etcd2", "etcd3")
SEED = int(os.environ.get("APIARY_SEED") or 13)


def run(cmd: list[str], timeout_s: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion within timeout_s (TimeoutExpired names it otherwise)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def compose_command() -> list[str] | None:
    """The harness's choice (harness/compose.py: $APIARY_COMPOSE, Compose v2, else v1), None when there is none."""
    from harness.compose import compose_command as choose
    from harness.errors import EnvironmentSetupError
    try:
        return choose()
    except EnvironmentSetupError:
        return None


@pytest.fixture(scope="module")
def etcd_image() -> str:
    return build_etcd_image()


def leftovers(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes still labelled with this run's id."""
    label = f"label=io.apiary.run={project}"
    found = {}
    for kind, cmd in (("containers", ["docker", "ps", "-aq"]), ("networks", ["docker", "network", "ls", "-q"]),
                      ("volumes", ["docker", "volume", "ls", "-q"])):
        found[kind] = run([*cmd, "--filter", label], 30).stdout.split()
    return found


@pytest.fixture
def etcd_cluster(etcd_image):
    """The compose project up (`up -d`), its members' published client URLs; `down -v` whatever happens."""
    compose = compose_command()
    if compose is None:
        pytest.skip("no compose: neither `docker compose`, .tools/docker-compose nor docker-compose")
    project = f"apiary-etcd-{secrets.token_hex(3)}"
    env = {**os.environ, "APIARY_RUN_ID": project}
    base = [*compose, "-p", project, "-f", str(COMPOSE_FILE)]
    cluster = SimpleNamespace(project=project, base=base, env=env, urls={})
    try:
        up = run([*base, "up", "-d"], 120, env)
        assert up.returncode == 0, f"compose up exited {up.returncode}:\n{tail(up.stderr)}"
        for member in MEMBERS:
            port = run([*base, "port", member, "2379"], 30, env)
            assert port.returncode == 0 and port.stdout.strip(), f"no published port for {member}: {port.stderr}"
            cluster.urls[member] = "http://" + port.stdout.strip().splitlines()[-1]
        yield cluster
    finally:
        down = run([*base, "down", "-v", "--remove-orphans", "-t", "2"], 120, env)
        left = leftovers(project)
    assert down.returncode == 0, f"compose down exited {down.returncode}:\n{tail(down.stderr)}"
    assert left == {"containers": [], "networks": [], "volumes": []}, left


def logs(cluster) -> str:
    """The members' last log lines, for a failure message."""
    out = run([*cluster.base, "logs", "--no-color", "--tail", "15"], 30, cluster.env)
    return tail(out.stdout + out.stderr, 45)


def all_healthy(cluster) -> bool:
    """True when Docker reports every member healthy; raises (naming each member's state) otherwise."""
    ids = run([*cluster.base, "ps", "-aq"], 30, cluster.env).stdout.split()
    states = run(["docker", "inspect", "-f", "{{.Name}}={{.State.Status}}/{{if .State.Health}}"
                  "{{.State.Health.Status}}{{end}}", *ids], 30).stdout.split() if ids else []
    if len(states) != len(MEMBERS) or not all(s.endswith("/healthy") for s in states):
        raise RuntimeError(f"members not all healthy: {states}")
    return True


def one_leader(cluster) -> dict:
    """Every member names the same leader, and that leader is one of them; raises otherwise."""
    statuses = {m: EtcdClient(url, timeout_s=2).status() for m, url in cluster.urls.items()}
    leaders = {s["leader"] for s in statuses.values()}
    ids = {s["member_id"]: m for m, s in statuses.items()}
    if len(leaders) != 1 or next(iter(leaders)) not in ids:
        raise RuntimeError(f"no single leader: {({m: (s['member_id'], s['leader']) for m, s in statuses.items()})}")
    return {"leader": ids[next(iter(leaders))], "raft_term": max(s["raft_term"] for s in statuses.values())}


@pytest.mark.timeout(900)
def test_a_three_member_cluster_serves_a_linearizable_register(etcd_cluster, tmp_path):
    started = time.monotonic()
    try:
        wait_until(lambda: all_healthy(etcd_cluster), 60, err_msg="three etcd members healthy in Docker")
        leader = wait_until(lambda: one_leader(etcd_cluster), 20, err_msg="one leader all members agree on")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs(etcd_cluster)}") from None
    ready = time.monotonic() - started
    names = sorted(m["name"] for m in EtcdClient(etcd_cluster.urls["etcd1"]).members())
    assert names == list(MEMBERS)

    work = RegisterWorkload(list(etcd_cluster.urls.values()), keys=["r0", "r1", "r2"], threads=5,
                            duration_s=5.0, max_ops=20_000, seed=SEED)
    summary = work.run()
    ops = work.history.ops
    (tmp_path / "history.jsonl").write_text(work.history.to_jsonl())
    for f in ("read", "write", "cas"):
        assert summary["by_f"].get(f, {}).get("ok", 0) > 0, (f, summary)
    nodes = {op["node"] for op in ops if op["type"] == "ok"}
    assert nodes == set(etcd_cluster.urls.values()), nodes   # every member answered

    verdict = check_register(ops, timeout_s=30)
    print(f"\nready in {ready:.1f} s (leader {leader}); workload {summary}; checker valid={verdict['valid']} "
          f"over {verdict['ops']} ops in {verdict['seconds']} s; history {tmp_path / 'history.jsonl'}")
    assert verdict["valid"] is True, {k: v for k, v in verdict.items() if k != "per_key"}
