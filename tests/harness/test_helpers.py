"""Pure helpers of the cluster, runner and gather modules."""
import json
import socket

import pytest

from apiary_suite.stackops import NETWORKS, SERVICES, free_port, keys_env, project_name
from harness.errors import ComposeError, EnvironmentSetupError, HarnessError, NemesisError
from apiary_suite.gather import bundle_dir, slug
from harness.runner import Settings, behave_command, parse_args


def test_project_name_is_compose_safe_and_unique_per_run():
    assert project_name("20261121-104500-AB12") == "apiary-20261121-104500-ab12"
    assert project_name("a_b c") == "apiary-abc"


def test_keys_env_round_trips_the_tenants():
    assert keys_env({"tenant-a": "key-a", "admin": "key-admin"}) == "tenant-a:key-a,admin:key-admin"


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_topology_hive_networks_never_touch_the_orchestrator():
    assert set(SERVICES) == set(NETWORKS)
    for service, nets in NETWORKS.items():
        if service != "orchestrator":
            assert not set(nets) & {"edge"}, service
    for hive in ("hive-a", "hive-b"):
        assert set(NETWORKS[hive]) & set(NETWORKS["orchestrator"]) == {"control"}


def test_error_hierarchy_and_compose_error_message():
    err = ComposeError(["docker-compose", "up"], 1, "", "boom\nport is already allocated")
    assert isinstance(err, HarnessError) and err.rc == 1 and "already allocated" in str(err)
    assert issubclass(NemesisError, HarnessError) and issubclass(EnvironmentSetupError, HarnessError)
    assert str(EnvironmentSetupError("unhealthy service", "hive-a")) == "unhealthy service: hive-a"


def test_bundle_dir_slugs_and_keeps_repeats_apart(tmp_path):
    first = bundle_dir(tmp_path, "Health propagation", "A worker: unhealthy / back")
    assert first == tmp_path / "failures" / "Health-propagation" / "A-worker-unhealthy-back"
    first.mkdir(parents=True)
    assert bundle_dir(tmp_path, "Health propagation", "A worker: unhealthy / back").name.endswith("-2")
    assert slug("") == "unnamed"


def test_parse_args_defaults_and_behave_passthrough():
    args = parse_args(["--tags", "@smoke", "--tags", "not @slow", "--no-build", "--", "--stop", "-v"])
    assert args.tags == ["@smoke", "not @slow"] and args.build is False and args.behave_args == ["--stop", "-v"]
    assert parse_args([]).tags == ["@integration"] and parse_args([]).build is True


def test_parse_args_rejects_unknown_backend():
    with pytest.raises(SystemExit):
        parse_args(["--backend", "k8s"])


def test_behave_command_pairs_outputs_and_puts_progress_on_stdout(tmp_path):
    cmd = behave_command(parse_args(["--fail-fast", "--tags", "@p0"]), tmp_path)
    assert cmd[cmd.index("json") + 1: cmd.index("json") + 3] == ["-o", str(tmp_path / "behave.json")]
    assert cmd.index("harness.progress:ProgressFormatter") > cmd.index(str(tmp_path / "report.html"))
    assert "--stop" in cmd and cmd[cmd.index("--tags") + 1] == "@p0"


def test_settings_round_trip_through_env(monkeypatch, tmp_path):
    s = Settings(run_id="r1", report_dir=str(tmp_path), seed=42, timeout_multiplier=2.5, backend="local", keep_up=True)
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    assert Settings.from_env() == s
    assert json.dumps(s.to_env())
