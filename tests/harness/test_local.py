"""Local backend pieces that need no running services: log filtering, env, refusing network faults."""
import json

import pytest

from harness.errors import NemesisError
from apiary_suite.local import LocalCluster, kill_leftovers


@pytest.fixture
def local(tmp_path):
    return LocalCluster("t", tmp_path)


def test_logs_since_keeps_json_lines_after_the_time_and_their_continuations(local, tmp_path):
    (tmp_path / "logs").mkdir()
    lines = [json.dumps({"ts": 10.0, "event": "old"}), "Traceback (most recent call last): old",
             json.dumps({"ts": 20.0, "event": "new"}), "Traceback (most recent call last): new"]
    (tmp_path / "logs" / "hive-a.log").write_text("\n".join(lines) + "\n")
    out = local.logs("hive-a", since=15.0)
    assert '"new"' in out and "new" in out.splitlines()[-1] and "old" not in out
    assert local.logs("hive-a").count("Traceback") == 2
    assert local.logs("worker-b2") == ""


def test_network_and_container_faults_need_the_docker_backend(local):
    for call in (lambda: local.disconnect("hive-a", "control"), lambda: local.connect("hive-a", "control"),
                 lambda: local.exec("hive-a", ["true"]), lambda: local.network_name("control")):
        with pytest.raises(NemesisError, match="needs the docker backend"):
            call()


def test_services_get_distinct_loopback_ports_and_wiring(local):
    ports = [p for svc in local.ports.values() for p in svc.values()]
    assert len(ports) == len(set(ports))
    env = local.env_for("worker-b1")
    assert env["APIARY_HIVE_ADDR"] == local.router_url_of("hive-b") and env["APIARY_HTTP_HOST"] == "127.0.0.1"
    assert local.env_for("hive-a")["APIARY_ORCHESTRATOR_ADDR"] == local.router_url


def test_kill_leftovers_ignores_pids_that_are_not_our_services(tmp_path):
    import os
    (tmp_path / "local-stack.json").write_text(json.dumps({"pids": {"orchestrator": os.getpid()}}))
    assert kill_leftovers(tmp_path) == []        # this pytest process is not a service: untouched
    assert kill_leftovers(tmp_path / "missing") == []


def test_reset_sends_the_declared_admin_reset_with_the_runs_key_and_a_wrong_key_is_refused(tmp_path):
    """The local backend's reset goes through the compose file's x-apiary.reset: it answers with the run's
    admin key (the stack's reset_headers), and the same request with another key is refused naming it."""
    from harness.stack.reset import ResetRefused, send_reset
    local = LocalCluster("rs", tmp_path)
    try:
        local.up(60)
        assert local.reset(30) > 0
        assert send_reset(local) == 200
        local.api_keys = {**local.api_keys, "admin": "not-the-key"}
        with pytest.raises(ResetRefused, match=r"x-apiary.reset POST http://127.0.0.1:\d+/v1/admin/reset answered 401"):
            send_reset(local)
    finally:
        local.down()
