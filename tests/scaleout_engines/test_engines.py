"""harness/engines.py against a second dockerd that the tests start on this machine (LocalEngine): it is another
engine, an image shipped from the default engine arrives with the same id, its containers answer the host by IP
and by a published 127.0.0.1 port and each other on their network, the main engine's rules and containers are
left alone, and stop() leaves nothing behind, also after the daemon was SIGKILLed."""
import io
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import docker
import pytest
import requests

from harness import engines, local_engine
from apiary_suite.stackops import free_port
from harness.sweep import RUN_LABEL
from harness.wait import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
RUN = f"engines-test-{secrets.token_hex(3)}"
ROOT = Path(__file__).resolve().parents[2]


def rules() -> set[str]:
    """This host's filter and nat rules (iptables -S, no counters)."""
    out = set()
    for table in ("filter", "nat"):
        out |= set(subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True,
                                  timeout=20).stdout.splitlines())
    return out


def pick_image() -> str:
    """The smallest tagged image of the default engine, Apiary's own (python3 inside) first; skip when none."""
    tagged = sorted((img.attrs["Size"], tag) for img in docker.from_env(timeout=30).images.list()
                    for tag in img.tags if not tag.endswith(":<none>"))
    ours = [tag for _size, tag in tagged if tag.startswith(("apiary/", "apiary-base"))]
    if ours or tagged:
        return (ours or [tag for _size, tag in tagged])[0]
    pytest.skip("the default engine holds no image at all (nothing to ship; this test builds none)")


def processes_naming(path: Path) -> list[int]:
    """Live pids whose command line names `path`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(path).encode() in (proc / "cmdline").read_bytes() and local_engine.pid_running(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def mounts_naming(path: Path) -> list[str]:
    """Lines of /proc/mounts that name `path`."""
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(path) in line]


def links() -> set[str]:
    """Words of `ip -o link` (interface names end with ':')."""
    return set(subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.split())


@pytest.fixture(scope="module")
def setting():
    """Preconditions: root, dockerd, iptables and a default engine that answers; its rules before we start."""
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("iptables"):
        pytest.skip("a second dockerd needs root, dockerd and iptables on this machine")
    if not engines.alive(None, 5):
        pytest.skip("the default Docker engine does not answer")
    return {"rules_before": rules(), "default": engines.describe_engine(None)}


@pytest.fixture(scope="module")
def engine(setting):
    """One LocalEngine for the module (the last test stops it and checks what is left)."""
    with local_engine.LocalEngine() as eng:
        yield eng


@pytest.fixture(scope="module")
def shipped(engine):
    """A small real image of the default engine, shipped to the LocalEngine: (ref, source id, result)."""
    ref = pick_image()
    src_id = engines.image_ids(None, [ref])[ref]
    assert engines.missing_images(engine.url, {ref: src_id}) == [ref]
    return ref, src_id, engines.ship_images(None, engine.url, [ref], deadline_s=120)


def has_python(client, ref: str) -> bool:
    """The image runs python3 (the http.server probe needs it)."""
    return client.containers.run(ref, ["sh", "-c", "command -v python3 >/dev/null && echo yes || echo no"],
                                 remove=True).strip() == b"yes"


SERVE = ["sh", "-c", "mkdir -p /w && hostname > /w/id && cd /w && exec python3 -m http.server 8000"]


def serve(client, ref: str, net: str, name: str, ports=None):
    """A python http.server on `net` whose /id is its hostname; returns (container, IP) once it answers."""
    box = client.containers.run(ref, SERVE, name=name, detach=True, network=net, ports=ports or {},
                                labels={RUN_LABEL: RUN})
    box.reload()
    ip = box.attrs["NetworkSettings"]["Networks"][net]["IPAddress"]
    wait_until(lambda: requests.get(f"http://{ip}:8000/id", timeout=1).ok, 20,
               err_msg=f"http.server in {name} did not answer on {ip}:8000")
    return box, ip


def test_the_local_engine_answers_and_is_another_engine(engine, setting):
    mine, default = engines.describe_engine(engine.url), setting["default"]
    assert mine["url"] == engine.url and engine.url.startswith("unix://")
    assert mine["id"] and mine["id"] != default["id"], (mine, default)
    assert mine["root_dir"] == str(engine.dir / "data") != default["root_dir"]
    assert engines.alive(engine.url) and engine.start_s < 30
    client = engine.client()
    net = client.networks.create(f"{RUN}-only-here", labels={RUN_LABEL: RUN})
    try:
        assert engines.leftovers_on(engine.url, RUN)["networks"] == [net.name]
        assert engines.leftovers_on(None, RUN)["networks"] == []
    finally:
        net.remove()


def main_bridge() -> str:
    """The interface of the main engine's default bridge network (docker0 unless configured otherwise)."""
    net = docker.from_env(timeout=30).networks.get("bridge")
    return net.attrs["Options"].get("com.docker.network.bridge.name", "docker0")


def test_a_missing_engine_is_named(tmp_path):
    url = f"unix://{tmp_path}/none.sock"
    assert not engines.alive(url, 1)
    with pytest.raises(engines.EnvironmentSetupError, match=str(tmp_path)):
        engines.describe_engine(url)


def test_starting_it_changed_no_rule_of_the_main_engine_and_added_only_its_own(engine, setting):
    now, before = rules(), setting["rules_before"]
    docker0 = {r for r in before if "docker0" in r}
    assert docker0 <= now, f"main engine rules gone: {docker0 - now}"
    assert main_bridge() in {name.rstrip(":") for name in links()}, "the main engine's default bridge is gone"
    assert [r for r in now - before if str(engine.dir) in r] == [r for r in now - before if "-s 10.2" in r]
    assert len([r for r in now if str(engine.dir) in r]) == 1, now - before


def test_an_image_shipped_from_the_default_engine_has_the_same_id(engine, shipped):
    ref, src_id, result = shipped
    assert engines.image_ids(engine.url, [ref]) == {ref: src_id}
    assert engines.missing_images(engine.url, {ref: src_id}) == []
    assert engines.missing_images(engine.url, {ref: "sha256:" + "0" * 64}) == [ref]
    assert result["bytes"] > 1_000_000 and result["streams"] == 1 and 0 < result[ref] <= result["total_s"] < 120


def test_shipping_an_absent_image_names_it_and_the_engine(engine):
    with pytest.raises(engines.EnvironmentSetupError, match="apiary/no-such-image:x.*default engine"):
        engines.ship_images(None, engine.url, ["apiary/no-such-image:x"], deadline_s=30)


def test_its_containers_answer_the_host_by_ip_and_port_and_each_other(engine, shipped):
    ref = shipped[0]
    client = engine.client()
    if not has_python(client, ref):
        pytest.skip(f"{ref} has no python3 for the http.server probe")
    subnet = engine.subnet(0)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
    net = client.networks.create(f"{RUN}-net", ipam=ipam, labels={RUN_LABEL: RUN})
    port = free_port()
    box, ip = serve(client, ref, net.name, f"{RUN}-srv", ports={"8000/tcp": ("127.0.0.1", port)})
    assert ip.startswith(subnet.rsplit(".", 2)[0])
    hostname = box.attrs["Config"]["Hostname"]
    assert requests.get(f"http://{ip}:8000/id", timeout=5).text.strip() == hostname
    assert requests.get(f"http://127.0.0.1:{port}/id", timeout=5).text.strip() == hostname
    peer = client.containers.run(ref, ["python3", "-c", f"import urllib.request as u; print(u.urlopen("
                                       f"'http://{ip}:8000/id', timeout=5).read().decode().strip())"],
                                 network=net.name, remove=True, labels={RUN_LABEL: RUN})
    assert peer.decode().strip() == hostname
    found = engines.leftovers_on(engine.url, RUN)
    assert found["containers"] == [f"{RUN}-srv"] and found["networks"] == [net.name]


def test_stop_leaves_nothing_and_the_main_engine_untouched(engine, shipped, setting):
    default = docker.from_env(timeout=30)
    sentinel = default.containers.create(shipped[0], ["true"], labels={RUN_LABEL: RUN})   # created, never run
    try:
        d, pid = engine.dir, engine.pid
        containerd = int((d / "exec" / "containerd" / "containerd.pid").read_text())
        assert local_engine.pid_running(pid) and local_engine.pid_running(containerd)
        assert mounts_naming(d), "a running engine has its data root mounted"
        bridges = {n.attrs["Id"][:12] for n in engine.client().networks.list() if n.attrs["Driver"] == "bridge"}
        assert engine.stop() == []
        assert not local_engine.pid_running(pid) and not local_engine.pid_running(containerd)
        assert processes_naming(d) == [] and mounts_naming(d) == [] and not d.exists()
        assert not {f"br-{b}:" for b in bridges} & links()
        assert not [r for r in rules() if str(d) in r]
        assert {r for r in setting["rules_before"] if "docker0" in r} <= rules()
        assert main_bridge() in {name.rstrip(":") for name in links()}, "the main engine's default bridge is gone"
        assert engine.bridge and f"{engine.bridge}:" not in links()
        assert engine.stop() == [] and not engines.alive(engine.url)
        assert engines.describe_engine(None)["id"] == setting["default"]["id"]
        mine = default.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN}"})
        assert [c.id for c in mine] == [sentinel.id]
    finally:
        sentinel.remove(force=True)


def tiny_image(client) -> str:
    """A ~2 MB image of this host's /bin/sh and the libraries ldd names (docker import): a container that waits."""
    sh = os.path.realpath("/bin/sh")
    libs = re.findall(r"\s(/\S+) \(", subprocess.run(["ldd", sh], capture_output=True, text=True).stdout)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, name in [(sh, "bin/sh")] + [(os.path.realpath(lib), lib.lstrip("/")) for lib in libs]:
            tar.add(path, arcname=name)
    client.api.import_image_from_data(buf.getvalue(), repository=f"{RUN}-tiny", tag="x")
    return f"{RUN}-tiny:x"


def test_a_killed_engine_is_dead_and_stop_still_cleans_up(setting):
    with local_engine.LocalEngine() as eng:
        client = eng.client()
        net = client.networks.create(f"{RUN}-k", labels={RUN_LABEL: RUN})
        box = client.containers.run(tiny_image(client), ["/bin/sh", "-c", "read forever"], detach=True,
                                    stdin_open=True, network=net.name)
        box.reload()
        box_pid, bridge = box.attrs["State"]["Pid"], f"br-{net.id[:12]}:"
        assert local_engine.pid_running(box_pid) and bridge in links()
        pid, containerd = eng.pid, int((eng.dir / "exec" / "containerd" / "containerd.pid").read_text())
        os.kill(int((eng.dir / "docker.pid").read_text()), signal.SIGKILL)
        wait_until(lambda: not engines.alive(eng.url, 1), 10, err_msg="the SIGKILLed engine still answered")
        wait_until(lambda: not local_engine.pid_running(containerd), 10, err_msg="containerd outlived its dockerd")
        assert processes_naming(eng.dir), "a SIGKILLed dockerd leaves its shims behind (else this test proves nothing)"
        assert local_engine.pid_running(box_pid) and mounts_naming(eng.dir)
        d = eng.dir
    assert eng.problems == []
    assert processes_naming(d) == [] and not local_engine.pid_running(box_pid) and not local_engine.pid_running(pid)
    assert mounts_naming(d) == [] and not d.exists() and bridge not in links()
    assert not [r for r in rules() if str(d) in r]


def test_an_engine_that_cannot_start_says_why_and_leaves_nothing(setting):
    eng = local_engine.LocalEngine(extra_config={"no-such-directive": 1})
    with pytest.raises(engines.EnvironmentSetupError, match=r"did not start.*exited(.|\n)*no-such-directive"):
        eng.start()
    assert not eng.dir.exists() and not local_engine.pid_running(eng.pid)
    assert not [r for r in rules() if str(eng.dir) in r]


SCRIPT = """
import os, signal, sys, time
from harness.local_engine import LocalEngine
if sys.argv[1] == "exit":
    eng = LocalEngine().start()                 # never stopped: the atexit safety net must
    print(eng.dir, eng.pid, flush=True)
else:
    signal.signal(signal.SIGINT, signal.default_int_handler)   # as a terminal gives it (CI may start us ignoring it)
    with LocalEngine() as eng:
        print(eng.dir, eng.pid, flush=True)
        os.kill(os.getpid(), signal.SIGINT)     # Ctrl-C
        time.sleep(30)
"""


@pytest.mark.parametrize("how", ["exit", "ctrl-c"])
def test_an_engine_is_stopped_when_its_process_exits_or_gets_ctrl_c(setting, how):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == (0 if how == "exit" else -signal.SIGINT), proc.stderr[-2000:]   # re-raised SIGINT
    folder, pid = proc.stdout.split()
    if how == "ctrl-c":
        assert "KeyboardInterrupt" in proc.stderr, proc.stderr[-2000:]
    assert not Path(folder).exists() and not local_engine.pid_running(int(pid)) and processes_naming(Path(folder)) == []
