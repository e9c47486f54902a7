"""The oom kind targets only the roles the stack's x-apiary.oom names and sends the trigger it declares:
a stack without the block (etcd) offers no oom target, where before the kind took every service the default
compose file did not list for a worker."""
import dataclasses
from pathlib import Path

import pytest

from harness.errors import NemesisError
from harness.nemesis import kinds_process
from harness.nemesis.protocol import REGISTRY, lookup
from harness.stack import default_topology
from harness.stack.topology import load
from tests.nemesis.fakes import FakeStack

ETCD = Path(__file__).resolve().parents[2] / "examples" / "etcd" / "docker-compose.yml"


class EtcdTopologyStack:
    """Just enough of a docker stack for targets(): etcd's topology and its services."""

    backend = "docker"

    def __init__(self):
        self.topology = load(ETCD)
        self.services = list(self.topology.names)


def test_a_stack_without_an_oom_block_offers_no_oom_target_and_etcd_none_of_apiarys_kinds():
    stack = EtcdTopologyStack()
    assert lookup("oom").targets(stack) == []
    offered = {name for name, kind in REGISTRY.items() if kind.targets(stack)}
    assert {"oom", "storage-corrupt", "storage-read-only"}.isdisjoint(offered), offered
    assert {"kill", "pause", "partition"} <= offered, offered


def test_the_trigger_goes_out_as_declared(monkeypatch):
    stack = FakeStack()
    stack.topology = dataclasses.replace(default_topology(), oom={
        "roles": ("hive",), "trigger": {"method": "POST", "path": "/hog", "body": {"mb": 512}}})
    sent = []

    def trigger(method, url, body=None, timeout_s=5.0):
        sent.append((method, url, body))
        return stack.put_faults(url.replace("/hog", "/faults"), {"oom": "now"})
    monkeypatch.setattr(kinds_process, "send_trigger", trigger)
    kind = lookup("oom")
    assert kind.targets(stack) == ["hive-a", "hive-b"]
    with pytest.raises(NemesisError, match="not accepted on this stack"):
        kind.apply(stack, "worker-a1")
    fault = kind.apply(stack, "hive-a")
    assert sent == [("POST", stack.http_url("hive-a").rstrip("/") + "/hog", {"mb": 512})]
    assert fault.verify()["held"] is True
    assert fault.heal() == []


def test_a_trigger_answered_4xx_is_named_with_its_method_and_url(monkeypatch):
    monkeypatch.setattr(kinds_process, "send_trigger", lambda method, url, body=None, timeout_s=5.0: 404)
    with pytest.raises(NemesisError, match=r"oom: PUT http://\S+/faults answered 404"):
        lookup("oom").apply(FakeStack(), "worker-a1")
