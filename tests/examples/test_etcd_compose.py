"""The etcd example's compose file, read without Docker: the kit's topology reader accepts its x-apiary block,
every resource carries the run label, ports are loopback-only, and raft runs only over the cuttable network."""
from __future__ import annotations

from pathlib import Path

import yaml

from harness.stack import load

COMPOSE = Path(__file__).resolve().parents[2] / "examples" / "etcd" / "docker-compose.yml"
MEMBERS = ("etcd1", "etcd2", "etcd3")
RUN_LABEL = "${APIARY_RUN_ID:-manual}"


def model() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_kit_reads_three_faultable_members_with_peer_cuttable():
    topo = load(COMPOSE)
    assert topo.names == MEMBERS
    assert topo.host_facing == ("client",) and topo.cuttable == ("peer",)
    assert topo.net_admin_services == MEMBERS
    assert {m: (topo.role(m), topo.listen_port(m), topo.health_port(m)) for m in MEMBERS} == \
        {m: ("etcd", 2380, 2379) for m in MEMBERS}
    assert topo.storage == {} and topo.oom == {}     # the storage and oom kinds offer no target here
    assert topo.reset == {"service": "etcd1", "method": "POST", "path": "/v3/kv/deleterange",
                          "body": {"key": "AA==", "range_end": "AA=="}}   # every key: "\0" up to "\0"


def test_every_container_network_and_volume_carries_the_run_label():
    config = model()
    for kind in ("services", "networks", "volumes"):
        for name, spec in config[kind].items():
            assert spec["labels"]["io.apiary.run"] == RUN_LABEL, (kind, name)


def test_client_ports_are_published_on_loopback_only():
    for name, spec in model()["services"].items():
        assert spec["ports"] == [f"127.0.0.1:${{APIARY_HOST_PORT_{name.upper()}:-0}}:2379"], name


def test_raft_peers_dial_names_that_exist_only_on_the_peer_network():
    """Cutting `peer` must cut raft: each peer URL's host is an alias of the peer network alone."""
    services = model()["services"]
    for name, spec in services.items():
        env, nets = spec["environment"], spec["networks"]
        assert env["ETCD_NAME"] == name
        assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"http://{name}-peer:2380"
        assert nets["peer"]["aliases"] == [f"{name}-peer"] and "aliases" not in (nets["client"] or {})
        assert nets["client"]["priority"] > nets["peer"]["priority"]   # the published port survives a cut
        members = dict(m.split("=", 1) for m in env["ETCD_INITIAL_CLUSTER"].split(","))
        assert members == {m: f"http://{m}-peer:2380" for m in services}
        assert (env["ETCD_HEARTBEAT_INTERVAL"], env["ETCD_ELECTION_TIMEOUT"]) == ("100", "1000")
