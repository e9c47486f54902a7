"""Container hardening (issue 11, item 7) on one live stack with fresh random keys: a read-only root
filesystem in every service (writes go only to tmpfs or named volumes), every process uid 10001, no key
in any container's inspect/env or any image's inspect/history, the keys file mounted read-only, a
completion still served (and the laptop keys refused); plus units for apiary_suite/secrets.py, the teardown
and the reaper deleting the run's secrets. The live part is skipped without an engine."""
import json
import os
import secrets
import stat
import time

import pytest
import requests

from apiary_suite.secrets import API_KEYS_FILE, read_api_keys, remove_run_secrets, secrets_dir, write_run_secrets
from apiary_suite.stackops import SERVICES
from services.orchestrator.auth import load_keys_file
from services.protocol import generate_text

KEYS = {t: f"{t}-{secrets.token_urlsafe(18)}" for t in ("tenant-a", "tenant-b", "admin")}
MOUNTED_KEYS = "/run/secrets/apiary-api-keys"
SERVICE_UID = "10001"
MODULES = {"orchestrator": "services.orchestrator", "hive": "services.worker_manager", "worker": "services.mock_worker"}


def leaked(text: str) -> list[str]:
    """The tenants whose run key occurs in text."""
    return [t for t, k in KEYS.items() if k in text]


# ---- apiary_suite/secrets.py ---------------------------------------------------------------------------
def test_write_run_secrets_makes_a_private_dir_whose_keys_file_the_orchestrator_reads(tmp_path):
    old = os.umask(0o077)                      # a strict umask must not make the file unreadable for uid 10001
    try:
        path = write_run_secrets(tmp_path / "run", KEYS)
    finally:
        os.umask(old)
    assert path == secrets_dir(tmp_path / "run") == tmp_path / "run" / "secrets"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((path / API_KEYS_FILE).stat().st_mode) == 0o644
    assert load_keys_file(str(path / API_KEYS_FILE)) == KEYS      # the orchestrator's own reader
    assert read_api_keys(tmp_path / "run") == KEYS
    assert sorted(p.name for p in path.iterdir()) == [API_KEYS_FILE, "curve"]
    assert sorted(p.name for p in (path / "curve").iterdir()) == ["client", "hive", "orchestrator", "worker"]
    assert stat.S_IMODE((path / "curve" / "worker" / "self.key_secret").stat().st_mode) == 0o644  # via the mount


def test_writing_again_replaces_the_keys_and_keeps_other_secrets(tmp_path):
    path = write_run_secrets(tmp_path, KEYS)
    hive_key = (path / "curve" / "hive" / "self.key").read_text()
    write_run_secrets(tmp_path, {"admin": "other-key"})
    assert load_keys_file(str(path / API_KEYS_FILE)) == {"admin": "other-key"}
    assert (path / "curve" / "hive" / "self.key").read_text() == hive_key   # a recreate keeps the CURVE set
    assert sorted(p.name for p in path.iterdir()) == [API_KEYS_FILE, "curve"]   # no temporary file left


@pytest.mark.parametrize("keys", [{}, {"admin": ""}, {"": "k"}, {"admin": " k"}, {"admin": 5}])
def test_bad_keys_are_refused_before_anything_is_written(tmp_path, keys):
    with pytest.raises(ValueError):
        write_run_secrets(tmp_path, keys)
    assert not secrets_dir(tmp_path).exists()


def test_remove_run_secrets_deletes_the_whole_directory(tmp_path):
    path = write_run_secrets(tmp_path, KEYS)
    assert (path / "curve" / "worker" / "self.key_secret").is_file()
    assert remove_run_secrets(tmp_path) is True
    assert not path.exists() and tmp_path.exists()
    assert remove_run_secrets(tmp_path) is True and read_api_keys(tmp_path) is None


def test_compose_gets_the_secrets_dir_and_never_a_key(tmp_path, monkeypatch):
    from apiary_suite.cluster import Cluster
    monkeypatch.setenv("APIARY_API_KEYS", ",".join(f"{t}:{k}" for t, k in KEYS.items()))
    cluster = Cluster("hardening-env", compose=["docker-compose"], client=object(), api_keys=KEYS, run_dir=tmp_path)
    env = cluster.compose_env()
    assert env["APIARY_SECRETS_DIR"] == str(tmp_path / "secrets")
    assert "APIARY_API_KEYS" not in env and not [k for k, v in env.items() if leaked(v)]


def test_teardown_deletes_the_secrets_even_when_the_stack_cannot_be_removed(tmp_path):
    from apiary_suite.run_stack import teardown
    from harness.settings import Settings

    class Broken:
        client, project = object(), "apiary-broken"

        def down(self):
            raise RuntimeError("engine gone")
    write_run_secrets(tmp_path, KEYS)
    with pytest.raises(RuntimeError, match="engine gone"):
        teardown(Settings(run_id="hardening-broken", report_dir=str(tmp_path)), Broken(), tmp_path)
    assert not secrets_dir(tmp_path).exists()


def test_the_reaper_deletes_a_dead_runs_secrets(tmp_path):
    from apiary_suite.reaper import reap
    write_run_secrets(tmp_path, KEYS)
    result = reap(f"hardening-reap-{secrets.token_hex(3)}", tmp_path, [])   # a run id with nothing on the engine
    assert result["secrets_removed"] is True and not secrets_dir(tmp_path).exists()


# ---- the live stack -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(docker_engine, stack_images, tmp_path_factory):
    """One stack with this module's random keys, every worker ready; removed (secrets too) at the end."""
    from apiary_suite.cluster import Cluster
    from harness.sweep import leftovers
    run_dir = tmp_path_factory.mktemp("hardening-run")
    run_id = f"harden-{secrets.token_hex(3)}"
    cluster = Cluster(run_id, api_keys=KEYS, run_dir=run_dir)
    try:
        cluster.up(180)
        cluster.wait_ready(60)
        yield cluster
    finally:
        failures = cluster.down()
    assert failures == []
    assert not secrets_dir(run_dir).exists(), "down() left the run's keys behind"
    assert leftovers(docker_engine, run_id) == {"containers": [], "networks": [], "volumes": []}


def run_in(stack, service: str, script: str, user: str) -> tuple[int, str]:
    result = stack.exec(service, ["sh", "-c", script], user=user, check=False)
    return result.exit_code, (result.output or b"").decode("utf-8", "replace")


def kind(service: str) -> str:
    return service.split("-")[0]        # orchestrator, hive, worker


@pytest.mark.docker
@pytest.mark.slow
def test_the_root_filesystem_is_read_only_and_writes_go_only_to_tmpfs_or_volumes(stack):
    for service in SERVICES:
        attrs = stack.container(service).attrs
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True, service
        for user in ("root", "apiary"):           # root too: it is the filesystem, not a permission
            rc, out = run_in(stack, service, "touch /apiary-probe", user)
            assert rc != 0 and "Read-only file system" in out, (service, user, rc, out)
        rc, out = run_in(stack, service, "touch /tmp/apiary-probe && rm /tmp/apiary-probe", "apiary")
        assert rc == 0, (service, out)            # /tmp is a tmpfs the service user can write
        assert "/tmp" in (attrs["HostConfig"].get("Tmpfs") or {}), service
        writable = {m["Destination"]: m["Type"] for m in attrs["Mounts"] if m["RW"]}
        assert writable and set(writable.values()) == {"volume"}, (service, writable)


@pytest.mark.docker
@pytest.mark.slow
def test_every_service_process_runs_as_uid_10001(stack):
    for service in SERVICES:
        container = stack.container(service)
        procs = container.top(ps_args="-o uid,pid,args")["Processes"]   # the host's ps: not the service's word
        assert procs and {p[0] for p in procs} == {SERVICE_UID}, (service, procs)
        assert any(MODULES[kind(service)] in p[2] for p in procs), (service, procs)
        assert container.attrs["Config"]["User"] == "apiary", service


@pytest.mark.docker
@pytest.mark.slow
def test_no_key_in_any_containers_inspect_or_environment(stack):
    for service in SERVICES:
        attrs = stack.container(service).attrs
        env = attrs["Config"]["Env"] or []
        assert not [e for e in env if e.startswith("APIARY_API_KEYS=")], service
        assert not [e for e in env if leaked(e)], (service, "a key in the environment")
        assert not leaked(json.dumps(attrs)), (service, "a key in docker inspect")
    env = dict(e.split("=", 1) for e in stack.container("orchestrator").attrs["Config"]["Env"])
    assert env["APIARY_API_KEYS_FILE"] == MOUNTED_KEYS


@pytest.mark.docker
@pytest.mark.slow
def test_no_key_in_any_image_layer_history_or_config(stack):
    images = {stack.container(s).image.id: stack.container(s).image for s in SERVICES}
    assert len(images) == 3
    for image in images.values():
        text = json.dumps(image.attrs) + json.dumps(image.history())
        assert not leaked(text), image.tags
        assert not [e for e in image.attrs["Config"].get("Env") or [] if e.startswith("APIARY_API_KEYS")], image.tags
        assert not [h for h in image.history() if "secrets" in (h.get("CreatedBy") or "")], image.tags


@pytest.mark.docker
@pytest.mark.slow
def test_the_keys_file_is_mounted_read_only_and_readable_by_the_service_user(stack):
    host_file = secrets_dir(stack.run_dir) / API_KEYS_FILE
    mounts = [m for m in stack.container("orchestrator").attrs["Mounts"] if m["Destination"] == MOUNTED_KEYS]
    assert len(mounts) == 1 and mounts[0]["Type"] == "bind" and mounts[0]["RW"] is False, mounts
    assert mounts[0]["Source"] == str(host_file)
    assert stat.S_IMODE(host_file.parent.stat().st_mode) == 0o700
    rc, out = run_in(stack, "orchestrator", f"cat {MOUNTED_KEYS}", "apiary")
    assert rc == 0 and json.loads(out) == KEYS
    rc, out = run_in(stack, "orchestrator", f"echo x >> {MOUNTED_KEYS}", "apiary")
    assert rc != 0, out                           # the file is root's 0644
    rc, out = run_in(stack, "orchestrator", f"echo x >> {MOUNTED_KEYS}", "root")
    assert rc != 0 and "Read-only file system" in out, (rc, out)   # and the mount itself is read-only
    for service in SERVICES[1:]:                  # only the orchestrator holds the bearer keys
        assert MOUNTED_KEYS not in [m["Destination"] for m in stack.container(service).attrs["Mounts"]]


@pytest.mark.docker
@pytest.mark.slow
def test_the_stack_serves_a_completion_with_the_run_keys_only_and_ledgers_it_on_a_volume(stack):
    nonce = secrets.token_hex(6)
    body = {"model": "tinyllama", "prompt": f"hardening nonce:{nonce}", "max_tokens": 6, "seed": 7}
    reply = requests.post(stack.api_url + "/v1/completions", json=body, timeout=15,
                          headers={"Authorization": f"Bearer {KEYS['tenant-a']}"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["text"] == generate_text(body["prompt"], body["seed"], body["max_tokens"])
    laptop = requests.post(stack.api_url + "/v1/completions", json=body, timeout=15,
                           headers={"Authorization": "Bearer key-a"})
    assert laptop.status_code == 401, "the laptop default keys must not work next to a keys file"
    finished = []
    for worker in [s for s in SERVICES if s.startswith("worker")]:
        ledger = requests.get(stack.http_url(worker) + "/ledger", params={"since": time.time() - 60}, timeout=5).json()
        assert ledger["path"] == "/data/ledger.jsonl" and ledger["write_errors"] == 0, (worker, ledger)
        finished += [e for e in ledger["entries"] if e.get("nonce") == nonce and e["event"] == "finish"]
        mounts = {m["Destination"]: m["Type"] for m in stack.container(worker).attrs["Mounts"]}
        assert mounts.get("/data") == "volume", (worker, mounts)
    assert len(finished) == 1, finished


@pytest.mark.docker
@pytest.mark.slow
def test_the_stack_description_and_a_failure_bundle_hold_no_key(stack, tmp_path):
    from apiary_suite.cluster import Cluster
    from apiary_suite.gather import write_bundle
    desc = stack.describe()
    assert not leaked(json.dumps(desc))            # stack.json is left in the run dir
    assert Cluster.attach(desc).api_keys == KEYS     # the behave process reads them from the secrets dir
    path = write_bundle(tmp_path / "bundle", stack, time.time() - 120, "hardening check")
    files = [p for p in path.rglob("*") if p.is_file()]
    assert len(files) >= 6 and not (path / "gather-errors.txt").exists()
    assert not [p.name for p in files if leaked(p.read_text(errors="replace"))]
