"""The topology of a compose file and its x-apiary: block: what the harness reads, and the errors that name
the file and the key when the block is wrong."""
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.stack import DEFAULT_COMPOSE, topology_of
from harness.stack.topology import TopologyError, from_compose_config, from_config, load

ROOT = Path(__file__).resolve().parents[2]


def model(**block):
    base = {"host_facing": ["edge"], "roles": {"db": {"rank": 1, "listen": 2379}, "client": {"rank": 0}},
            "services": {"db1": {"role": "db", "health": {"port": 2379, "path": "/health"}}, "app": {"role": "client"}}}
    base.update(block)
    return {"services": {"db1": {"networks": {"inner": {"priority": 10}, "edge": {"priority": 100}}, "cap_add": ["NET_ADMIN"]},
                         "app": {"networks": ["inner"]}},
            "networks": {"inner": {}, "edge": {}}, "x-apiary": base}


def test_a_block_gives_roles_ranks_ports_networks_in_priority_order_and_net_admin():
    t = from_config(model(), "x.yml")
    assert t.names == ("db1", "app")
    assert t.networks_of("db1") == ("edge", "inner") and t.cuttable_networks("db1") == ["inner"]
    assert t.net_admin_services == ("db1",) and not t.net_admin("app")
    assert (t.role("app"), t.rank("db1"), t.listen_port("db1"), t.health_port("db1")) == ("client", 1, 2379, 2379)
    assert t.cuttable == ("inner",)


@pytest.mark.parametrize("change, words", [
    ({"x-apiary": None}, "no x-apiary: block"),
    ({"services": None}, "no services: mapping"),
])
def test_a_file_without_what_the_harness_needs_is_refused_naming_it(change, words):
    cfg = {**model(), **change}
    with pytest.raises(TopologyError, match=words):
        from_config(cfg, "x.yml")


@pytest.mark.parametrize("block, words", [
    ({"services": {"ghost": {"role": "db"}}}, r"x-apiary.services.ghost: no such service"),
    ({"services": {"db1": {"role": "cache"}}}, r"x-apiary.services.db1.role 'cache' is not in x-apiary.roles"),
    ({"services": {"db1": {"role": "db", "health": {"port": "80"}}}}, r"x-apiary.services.db1.health.port must be a port"),
    ({"host_facing": ["public"]}, r"host_facing names networks the file does not define: \['public'\]"),
    ({"default_role": "cache"}, r"default_role 'cache' is not in x-apiary.roles"),
    ({"reset": {"service": "ghost", "path": "/r"}}, r"x-apiary.reset.service 'ghost' is not in x-apiary.services"),
    ({"reset": {"service": "app", "path": "/r"}}, r"x-apiary.reset.service 'app' has no health.port"),
    ({"reset": {"service": "db1", "method": "PATCH", "path": "/r"}}, r"x-apiary.reset.method 'PATCH' is not one of"),
    ({"reset": {"service": "db1", "path": "r"}}, r"x-apiary.reset.path must be a path starting with '/', not 'r'"),
    ({"reset": {"service": "db1", "path": "/r", "headers": {}}}, r"x-apiary.reset: unknown keys \['headers'\]"),
    ({"reset": "POST /r"}, r"x-apiary.reset must be a mapping"),
    ({"oom": {"roles": ["db"]}}, r"x-apiary.oom must be a mapping with roles and a trigger request"),
    ({"oom": {"roles": "db", "trigger": {"path": "/f"}}}, r"x-apiary.oom.roles must be a list of the roles"),
    ({"oom": {"roles": ["cache"], "trigger": {"path": "/f"}}}, r"x-apiary.oom.roles names roles no service has: \['cache'\]"),
    ({"oom": {"roles": ["db"], "trigger": {"path": "/f", "verb": "PUT"}}}, r"x-apiary.oom.trigger: unknown keys \['verb'\]"),
    ({"oom": {"roles": ["db"], "trigger": {}, "when": 1}}, r"x-apiary.oom: unknown keys \['when'\]"),
    ({"profiles": "no/such/dir"}, r"x-apiary.profiles 'no/such/dir' is not a directory"),
    ({"profiles": ["a"]}, r"x-apiary.profiles must be a directory path"),
])
def test_a_wrong_key_is_named_with_the_file(block, words):
    with pytest.raises(TopologyError, match=words) as err:
        from_config(model(**block), "stack.yml")
    assert str(err.value).startswith("stack.yml: ")


def test_a_role_without_a_listen_port_cannot_be_a_link_destination():
    t = from_config(model(), "x.yml")
    with pytest.raises(TopologyError, match=r"x-apiary.roles.client.listen is not set"):
        t.listen_port("app")


def test_an_undeclared_service_takes_the_default_role_or_is_refused():
    assert from_config(model(default_role="client"), "x.yml").role("extra-1") == "client"
    with pytest.raises(TopologyError, match="no service 'extra-1'"):
        from_config(model(), "x.yml").role("extra-1")


def test_unreadable_and_invalid_files_are_named(tmp_path):
    with pytest.raises(TopologyError, match="cannot read the compose file"):
        load(tmp_path / "missing.yml")
    (tmp_path / "bad.yml").write_text("services: [\n")
    with pytest.raises(TopologyError, match="bad.yml: not valid YAML"):
        load(tmp_path / "bad.yml")


def test_apiarys_compose_file_gives_the_stack_the_harness_always_had():
    t = load(DEFAULT_COMPOSE)
    assert t.names == ("orchestrator", "hive-a", "hive-b", "worker-a1", "worker-a2", "worker-b1", "worker-b2")
    assert t.host_facing == ("edge",) and t.networks == ("control", "edge", "hive-a-net", "hive-b-net")
    assert set(t.net_admin_services) == set(t.names) - {"orchestrator"}
    assert {s: t.rank(s) for s in ("orchestrator", "hive-a", "worker-b2")} == {"orchestrator": 2, "hive-a": 1, "worker-b2": 0}
    assert [t.listen_port(s) for s in ("orchestrator", "hive-b", "worker-a1")] == [5555, 5556, 8001]
    assert t.role("extra-0a1b2c-1") == "worker" and t.storage["file"] == "/data/registry.db"
    assert set(t.networks_of("hive-a")) == {"control", "hive-a-net"} and t.networks_of("worker-b1") == ("hive-b-net",)


def test_a_stack_with_its_own_topology_is_asked_for_it():
    own = from_config(model(), "other.yml")
    stack = type("S", (), {"topology": own})()
    assert topology_of(stack) is own and topology_of(object()).source == str(DEFAULT_COMPOSE)


def test_compose_config_reads_the_same_topology_as_the_yaml():
    cmd = [str(ROOT / ".tools" / "docker-compose")] if (ROOT / ".tools" / "docker-compose").exists() else \
        ["docker", "compose"] if shutil.which("docker") else None
    if cmd is None or subprocess.run([*cmd, "version"], capture_output=True).returncode != 0:
        pytest.skip("no compose CLI on this machine (the runner fetches one: scripts/get-compose-v2.sh)")
    via_cli, via_yaml = from_compose_config(cmd, DEFAULT_COMPOSE), load(DEFAULT_COMPOSE)
    assert sorted(via_cli.names) == sorted(via_yaml.names)
    assert {s: set(via_cli.networks_of(s)) for s in via_cli.names} == {s: set(via_yaml.networks_of(s)) for s in via_yaml.names}
    assert (via_cli.ranks, via_cli.listen, via_cli.net_admin_services) == \
        (via_yaml.ranks, via_yaml.listen, tuple(sorted(via_yaml.net_admin_services)))


def test_fault_kinds_ask_the_stacks_own_topology_not_the_default_file():
    """Found with the etcd example: the partition kind took etcd1 for an Apiary worker (probe port 8001, no
    cuttable network). With the stack's own topology it dials raft's 2380 and cuts the peer network."""
    import harness.nemesis.protocol as proto
    from harness.nemesis.kinds_network import leaf, shared
    etcd = load(ROOT / "examples" / "etcd" / "docker-compose.yml")
    stack = type("S", (), {"topology": etcd, "services": list(etcd.names), "backend": "docker"})()
    assert proto.listen_port("etcd1", stack) == 2380 and proto.static_networks("etcd1", stack) == ["peer"]
    assert proto.peers(stack, "etcd1") == ["etcd2", "etcd3"] and leaf("etcd1", "etcd2", stack) == "etcd2"
    assert shared({"peer": {}, "client": {}}, {"peer": {}, "client": {}}, stack) == ["peer"]
    assert sorted(proto.REGISTRY["partition"].claims(stack, "etcd1|*", {})) == [("etcd1", "cut"), ("etcd2", "probe"), ("etcd3", "probe")]


def test_a_reset_is_read_with_its_method_defaulting_to_post_and_its_body_kept():
    t = from_config(model(reset={"service": "db1", "path": "/v3/kv/deleterange", "body": {"key": "AA=="}}), "x.yml")
    assert t.reset == {"service": "db1", "method": "POST", "path": "/v3/kv/deleterange", "body": {"key": "AA=="}}
    assert from_config(model(), "x.yml").reset == {}


def test_an_oom_block_is_read_with_its_roles_and_trigger():
    t = from_config(model(oom={"roles": ["db"], "trigger": {"method": "put", "path": "/faults", "body": {"oom": "now"}}}),
                    "x.yml")
    assert t.oom == {"roles": ("db",), "trigger": {"method": "PUT", "path": "/faults", "body": {"oom": "now"}}}
    assert from_config(model(), "x.yml").oom == {}


def test_profile_names_are_the_suites_found_where_the_compose_file_says(monkeypatch):
    """Apiary's file names apiary_suite/profiles; etcd's names none, so a name is refused naming the file
    while a path still loads."""
    from harness.nemesis.generator import load_profile, profiles_dir
    assert profiles_dir() == ROOT / "apiary_suite" / "profiles"
    assert load_profile("ci")["kinds"]
    etcd = ROOT / "examples" / "etcd" / "docker-compose.yml"
    monkeypatch.setenv("APIARY_COMPOSE_FILE", str(etcd))
    assert profiles_dir() is None
    with pytest.raises(ValueError, match=rf"profile 'ci': a name is looked up in .* and {etcd} names none"):
        load_profile("ci")
    assert load_profile(str(etcd.parent / "soak-profile.yml"))["kinds"]
