"""The link-quality kinds against the real compose stack: apply -> verify held (latency measured by the
ZMTP greeting probe, bandwidth by a transfer, reset_peer/limit_data/blackhole by a probe through the twin) -> heal -> no steering rule left in the source container,
no proxy left, the stack ready. One stack for the module, torn down in a finally; skipped without an engine."""
import secrets

import pytest

from harness.nemesis.protocol import CHAIN, lookup, run
from harness.nemesis.steering import STEERED, server
from tests.harness.conftest import docker_engine, stack_images  # noqa: F401 - fixtures

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(docker_engine, stack_images):  # noqa: F811 - the imported fixtures
    from harness.cluster import Cluster
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
    fault = lookup(kind).apply(stack, target, **params)
    src = fault.steering.src
    try:
        verdict = fault.verify()
        assert verdict["held"] is True, verdict
        assert fault.steering.tag in nat_rules(stack, src)
    finally:
        assert fault.heal() == []
    assert fault.steering.tag not in nat_rules(stack, src)
    assert not [n for n in server().proxies if fault.steering.name in n]
    assert not STEERED
    stack.wait_ready(20)
