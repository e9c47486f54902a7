"""The link-quality kinds against the real compose stack: apply -> verify held (latency measured by the
ZMTP greeting probe, bandwidth by a transfer, reset_peer/limit_data/blackhole by a probe through the twin) -> heal -> no steering rule left in the source container,
no proxy left, the stack ready. One stack for the module, torn down in a finally; skipped without an engine."""
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.nemesis import probes
from harness.nemesis.protocol import CHAIN, lookup, run
from harness.nemesis.steering import STEERED, server
from tests.harness.conftest import docker_engine, stack_images  # noqa: F401 - fixtures

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(docker_engine, stack_images):  # noqa: F811 - the imported fixtures
    from apiary_suite.cluster import Cluster
    cluster = Cluster(f"nqkinds-{secrets.token_hex(3)}")
    try:
        cluster.up(180)
        cluster.wait_ready(60)
        yield cluster
    finally:
        cluster.down()


def nat_rules(stack, service: str) -> str:
    rc, out = run(stack, service, ["sh", "-c", f"iptables -w -t nat -S {CHAIN} 2>/dev/null; true"])
    return out


@pytest.mark.parametrize("kind,target,params", [
    ("latency", "orchestrator|hive-b", {"latency": 30}),
    ("latency", "hive-a|worker-a1", {"latency": 20, "stream": "downstream"}),
    ("bandwidth", "hive-a|worker-a2", {"rate": 30}),
    ("reset_peer", "hive-b|worker-b1", {"timeout": 200}),
    ("limit_data", "hive-b|worker-b2", {"bytes": 4096, "stream": "both"}),
    ("blackhole", "hive-a|worker-a1", {"timeout": 0, "stream": "downstream"}),
])
def test_quality_kind_cycle(stack, kind, target, params):
    cycle(stack, kind, target, params, via="netns")


def cycle(stack, kind: str, target: str, params: dict, via: str) -> None:
    """apply -> steered the expected way -> verify held, its rule in src -> heal -> no rule, no proxy, no
    steering left, the stack ready."""
    fault = lookup(kind).apply(stack, target, **params)
    src = fault.steering.src
    try:
        assert fault.steering.via == via
        if via == "host":
            assert fault.steering.proxy.listen.split(":")[0] != fault.steering.src_ip
        verdict = fault.verify()
        assert verdict["held"] is True, verdict
        assert fault.steering.tag in nat_rules(stack, src)
    finally:
        assert fault.heal() == []
    assert fault.steering.tag not in nat_rules(stack, src)
    assert not [n for n in server().proxies if fault.steering.name in n]
    assert not STEERED
    stack.wait_ready(20)


@pytest.mark.parametrize("kind,target,params", [
    ("latency", "orchestrator|hive-a", {"latency": 30}),
    ("bandwidth", "hive-b|worker-b1", {"rate": 30}),
    ("reset_peer", "hive-a|worker-a2", {"timeout": 200}),
])
def test_quality_kind_cycle_from_the_host_end(stack, monkeypatch, kind, target, params):
    """With namespaces off limits (probes.enabled False) the proxy runs on the bridge's host end, and still holds."""
    monkeypatch.setattr(probes, "enabled", False)
    cycle(stack, kind, target, params, via="host")


def test_quality_kind_as_an_unprivileged_user(stack):
    """A process with no root and no capabilities (only the docker group) still applies, proves and heals latency."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to start the unprivileged process")
    sock = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    gid = os.stat(sock).st_gid
    spec = {"kind": "latency", "target": "orchestrator|hive-b", "params": {"latency": 40}}
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={gid}", "--inh-caps=-all", "--bounding-set=-all",
           sys.executable, "-B", str(ROOT / "tests" / "toxiproxy" / "nonroot_fault.py"), json.dumps(stack.describe()),
           json.dumps(spec)]
    env = {**os.environ, "HOME": "/tmp", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["uid"] == 65534 and out["entered_netns"] is False, out
    assert out["via"] == "host" and out["held"] is True, out
    assert out["left"] == [], out
    assert f"-A {CHAIN}" not in nat_rules(stack, "hive-b")
    stack.wait_ready(20)
