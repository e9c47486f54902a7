"""LocalEngine: a second dockerd on this machine for tests and benchmarks; to the harness, another engine.

Measured here (Docker 20.10, iptables-nft, br_netfilter on, host FORWARD policy DROP):
- "iptables": false is needed: with iptables on, a second dockerd flushes the DOCKER and isolation chains as
  it starts (tried in a scratch network namespace holding a copy of this host's rules: the main engine's
  DNAT/ACCEPT and docker0 isolation rules were gone).
- Without them, published 127.0.0.1 ports answer (docker-proxy) and the host reaches containers by IP, but
  two containers on one of its networks cannot talk (bridged traffic passes FORWARD, policy DROP). So each
  engine gets a pool of its own (a free 10.x.0.0/16) and one ACCEPT rule atop FORWARD for bridged traffic
  inside it, removed by stop(). Networks with an explicit subnet take theirs from subnet(i).
- `--bridge none` (ENVIRONMENT.md's recipe) makes dockerd delete the main engine's docker0 as it starts,
  and every build and default-network container of the main engine then fails ("could not find bridge
  docker0"). So each engine gets a bridge of its own, apiary-e<x> at 10.x.128.1/24, as its default bridge.
- On 20.10 the engine ID comes from /etc/docker/key.json: without its own "deprecated-key-path" the second
  engine reports the main engine's ID.
- A clean stop leaves its networks' bridges; a SIGKILLed dockerd also leaves shims, container processes and
  fuse-overlayfs mounts. stop() removes them all.
"""
from __future__ import annotations

import atexit
import fcntl
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.errors import EnvironmentSetupError, HarnessError
from harness.wait import WaitTimeout, wait_until
from harness.engines import first_line, session, alive, engine_client

RULE_TAG = "apiary-local-engine"
POOLS = [ipaddress.ip_network(f"10.{n}.0.0/16") for n in range(200, 255)]
POOL_LOCK = Path(tempfile.gettempdir()) / "apiary-local-engine.lock"
_LIVE: list["LocalEngine"] = []


def pid_running(pid: int) -> bool:
    """A process with this pid exists and is no zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root` (from /proc/mounts), deepest first."""
    prefix = str(root)
    points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1])
              for line in Path("/proc/mounts").read_text().splitlines() if len(line.split()) > 1]
    return sorted({p for p in points if p == prefix or p.startswith(prefix + "/")}, key=len, reverse=True)


def _run(*cmd: str) -> subprocess.CompletedProcess:
    """A short command's result (output captured, 20 s at most)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


def _iptables(*args: str) -> subprocess.CompletedProcess:
    """iptables, waiting up to 5 s for the xtables lock."""
    return _run("iptables", "-w", "5", *args)


class LocalEngine:
    """A second dockerd on this machine, with its own folder (data, exec root, containerd, socket, log), address
    pool and FORWARD rule; `with LocalEngine() as eng:` or start()/stop(). stop() is idempotent and also runs
    at interpreter exit for an engine still up."""

    def __init__(self, start_timeout_s: float = 30, stop_timeout_s: float = 15, base_dir: str | None = None,
                 extra_config: dict | None = None):
        self.start_timeout_s, self.stop_timeout_s, self.base_dir = start_timeout_s, stop_timeout_s, base_dir
        self.extra_config = extra_config or {}
        self.dir: Path | None = None
        self.pool: ipaddress.IPv4Network | None = None
        self.bridge: str | None = None
        self.pid: int | None = None
        self.start_s: float | None = None
        self.problems: list[str] = []
        self._rule: list[str] | None = None
        self._proc: subprocess.Popen | None = None
        self._state = "new"
        self._lock = threading.Lock()

    def __enter__(self) -> "LocalEngine":
        """start()."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """stop(), also on an exception or Ctrl-C."""
        self.stop()

    @property
    def url(self) -> str:
        """unix://<dir>/docker.sock."""
        if self.dir is None:
            raise HarnessError("LocalEngine has no URL before start()")
        return f"unix://{self.dir}/docker.sock"

    def subnet(self, index: int = 0) -> str:
        """The index-th /24 from the top of the engine's pool, for networks with an explicit subnet."""
        if self.pool is None:
            raise HarnessError("LocalEngine has no address pool before start()")
        return str(list(self.pool.subnets(new_prefix=24))[-1 - index])

    def client(self, timeout: float = 30):
        """A Docker SDK client for this engine."""
        return engine_client(self.url, timeout)

    def start(self) -> "LocalEngine":
        """Start dockerd (and its containerd); wait until `docker info` answers, else stop and raise."""
        with self._lock:
            if self._state != "new":
                raise HarnessError(f"LocalEngine {self.dir} was already started (state {self._state})")
            self._state = "starting"
        began = time.monotonic()
        self.dir = Path(tempfile.mkdtemp(prefix="apiary-engine-", dir=self.base_dir))
        _LIVE.append(self)
        try:
            dockerd = shutil.which("dockerd")
            if not dockerd:
                raise EnvironmentSetupError("dockerd not found on PATH", "a LocalEngine needs the Docker daemon binary")
            for sub in ("data", "exec"):
                (self.dir / sub).mkdir()
            self._claim_pool()
            self._make_bridge()
            config = {"storage-driver": "fuse-overlayfs", "mtu": 1400, "iptables": False, "bridge": self.bridge,
                      "default-address-pools": [{"base": str(next(self.pool.subnets(new_prefix=17))), "size": 24}],
                      **self.extra_config}
            if int((re.findall(r"version (\d+)\.", _run(dockerd, "--version").stdout) or ["0"])[0]) < 23:
                # 23+ keeps its engine id in the data root
                config["deprecated-key-path"] = str(self.dir / "key.json")
            (self.dir / "daemon.json").write_text(json.dumps(config, indent=1))
            d = self.dir
            with open(d / "dockerd.log", "wb") as log:
                self._proc = subprocess.Popen(
                    [dockerd, "--config-file", f"{d}/daemon.json", "--host", self.url, "--data-root", f"{d}/data",
                     "--exec-root", f"{d}/exec", "--pidfile", f"{d}/docker.pid"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.pid = self._proc.pid
            self._wait_answering()
        except BaseException:
            self.stop()
            raise
        self.start_s = round(time.monotonic() - began, 3)
        self._state = "running"
        return self

    def _wait_answering(self) -> None:
        """Until `docker info` answers (deadline); else EnvironmentSetupError with the end of dockerd's log."""
        def answered() -> str | None:
            """'up' once `docker info` answers, 'exited N' if dockerd died first."""
            if self._proc.poll() is not None:
                return f"exited {self._proc.returncode}"
            with session(self.url, 2) as client:
                return "up" if client.info().get("ID") else None
        try:
            state = wait_until(answered, self.start_timeout_s, interval_s=0.1, max_interval_s=0.5,
                               err_msg="did not answer `docker info`")
        except WaitTimeout as exc:
            state = str(exc)
        if state != "up":
            log = (self.dir / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
            raise EnvironmentSetupError(f"second Docker engine at {self.url} did not start",
                                        f"dockerd {state}; its log ends:\n" + "\n".join(log))

    def _claim_pool(self) -> None:
        """Pick a 10.x.0.0/16 no route and no other LocalEngine uses; let bridged traffic inside it through."""
        if not shutil.which("iptables"):
            self.problems.append("iptables not found: containers on one network may not reach each other")
        with open(POOL_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            routes = json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]")
            taken = [ipaddress.ip_network(r["dst"], strict=False) for r in routes
                     if r.get("dst", "default") != "default"]
            rules = _iptables("-S", "FORWARD").stdout.splitlines() if shutil.which("iptables") else []
            for line in (r for r in rules if RULE_TAG in r):
                owner = re.search(rf'{RULE_TAG} (\S+?)"?(\s|$)', line)
                if owner and not Path(owner.group(1)).exists():         # a crashed run's rule: drop it
                    _iptables("-D", *shlex.split(line)[1:])
                else:
                    taken += [ipaddress.ip_network(m) for m in re.findall(r"-s (\S+)", line)]
            free = [p for p in POOLS if not any(p.overlaps(t) for t in taken)]
            if not free:
                raise EnvironmentSetupError("no free address pool for a LocalEngine", "all of 10.200-254.0.0/16 in use")
            self.pool = free[0]
            if shutil.which("iptables"):
                rule = ["FORWARD", "-s", str(self.pool), "-d", str(self.pool), "-m", "physdev", "--physdev-is-bridged",
                        "-m", "comment", "--comment", f"{RULE_TAG} {self.dir}", "-j", "ACCEPT"]
                done = _iptables("-I", rule[0], "1", *rule[1:])
                if done.returncode != 0:
                    raise EnvironmentSetupError("cannot add the LocalEngine's FORWARD rule", done.stderr.strip()[-300:])
                self._rule = rule

    def stop(self) -> list[str]:
        """Stop its containers, the daemon (SIGTERM by pidfile, SIGKILL past the deadline) and whatever it left
        (containerd, shims, container processes, mounts, bridges, the FORWARD rule); remove its folder.
        Idempotent; returns what could not be cleaned up (also in .problems)."""
        with self._lock:
            if self._state in ("new", "stopped"):
                return self.problems
            self._state = "stopped"
        if self.dir is None:
            return self.problems
        steps = (self._empty, self._stop_daemon, self._kill_leftovers, self._unmount, self._kill_leftovers,
                 self._unmount, self._remove_bridges, self._drop_rule, self._remove_dir)
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - every step runs; what failed is reported
                self.problems.append(f"{step.__name__.lstrip('_')}: {first_line(exc)}")
        if self in _LIVE:
            _LIVE.remove(self)
        return self.problems

    def _empty(self) -> None:
        """Stop and remove every container (in parallel), then its networks, while the daemon answers."""
        if not alive(self.url):
            return
        with session(self.url, self.stop_timeout_s + 10, "empty itself") as client:
            def drop(container) -> None:
                """Stop (3 s grace) and remove one container."""
                container.stop(timeout=3)
                container.remove(force=True, v=True)
            with ThreadPoolExecutor(8) as pool:
                for result in [pool.submit(drop, c) for c in client.containers.list(all=True)]:
                    if result.exception():
                        self.problems.append(f"container: {first_line(result.exception())}")
            client.networks.prune()

    def _stop_daemon(self) -> None:
        """SIGTERM the daemon (pid from its pidfile), wait (deadline), SIGKILL it if it is still there."""
        pidfile = self.dir / "docker.pid"
        pid = int(pidfile.read_text().strip() or 0) if pidfile.exists() else self.pid
        mine = self._proc is not None and self._proc.pid == pid

        def gone() -> bool:
            """dockerd exited (and, when it is our child, was reaped)."""
            return self._proc.poll() is not None if mine else not pid_running(pid)
        for sig, wait_s in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 10)) if pid else ():
            if not gone():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                wait_until(gone, wait_s, scale=False, err_msg=f"dockerd {pid} did not exit after {sig.name}")
                return
            except WaitTimeout as exc:
                if sig == signal.SIGKILL:
                    self.problems.append(str(exc))

    def _kill_leftovers(self) -> None:
        """SIGKILL what the daemon left running: processes whose command line names the folder (containerd,
        shims, fuse-overlayfs) or in the cgroup of one of its containers; those cgroups go too."""
        ids = [p.name for p in (self.dir / "data" / "containers").glob("*")] if self.dir.exists() else []
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if int(proc.name) != os.getpid() and pid_running(int(proc.name)) and (
                        str(self.dir).encode() in (proc / "cmdline").read_bytes()
                        or any(cid in (proc / "cgroup").read_text() for cid in ids)):
                    pids.append(int(proc.name))
            except OSError:
                continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            wait_until(lambda: not any(pid_running(p) for p in pids), 10, scale=False,
                       err_msg=f"processes of {self.dir} did not exit after SIGKILL")
        except WaitTimeout as exc:
            self.problems.append(str(exc))
        for top, dirs, _files in os.walk("/sys/fs/cgroup") if ids else ():
            for name in [d for d in dirs if any(cid in d for cid in ids)]:
                dirs.remove(name)
                try:
                    os.rmdir(os.path.join(top, name))       # empty by now; a busy one stays (and says so)
                except OSError as exc:
                    self.problems.append(f"cgroup {top}/{name}: {exc.strerror}")

    def _unmount(self) -> None:
        """umount everything mounted under the folder, deepest first (lazily when busy)."""
        for point in _mounts_under(self.dir):
            if _run("umount", point).returncode != 0:
                _run("umount", "-l", point)
        left = _mounts_under(self.dir)
        if left:
            raise HarnessError(f"still mounted: {', '.join(left)}")

    def _make_bridge(self) -> None:
        """Its own default bridge (10.x.128.1/24 of its pool): `--bridge none` makes dockerd delete the main
        engine's docker0 as it starts (measured: every build on the main engine then failed)."""
        self.bridge = f"apiary-e{self.pool.network_address.packed[1]}"
        _run("ip", "link", "del", self.bridge)                       # a crashed run's, same pool: ours now
        address = f"{list(self.pool.subnets(new_prefix=24))[128].network_address + 1}/24"
        for cmd in (("link", "add", self.bridge, "type", "bridge"), ("addr", "add", address, "dev", self.bridge),
                    ("link", "set", self.bridge, "mtu", "1400", "up")):
            done = _run("ip", *cmd)
            if done.returncode != 0:
                raise EnvironmentSetupError(f"cannot make the LocalEngine's bridge {self.bridge}",
                                            f"ip {' '.join(cmd)}: {done.stderr.strip()[-300:]}")

    def _remove_bridges(self) -> None:
        """Delete bridge interfaces the daemon left: an address in its pool, or named in its network store."""
        names = set()
        store = self.dir / "data" / "network" / "files" / "local-kv.db"
        if store.exists():
            names |= set(re.findall(r"br-[0-9a-f]{12}", store.read_bytes().decode("latin-1")))
        for link in json.loads(_run("ip", "-j", "-4", "addr").stdout or "[]"):
            if self.pool and any(ipaddress.ip_address(a["local"]) in self.pool for a in link.get("addr_info", [])):
                names.add(link["ifname"])
        if self.bridge:
            names.add(self.bridge)
        for name in sorted(names):                    # one already gone fails harmlessly
            _run("ip", "link", "del", name)

    def _drop_rule(self) -> None:
        """Remove the FORWARD rule start() added (every copy of it)."""
        while self._rule and _iptables("-D", *self._rule).returncode == 0:
            pass
        self._rule = None

    def _remove_dir(self) -> None:
        """rm -rf the folder (everything under it is unmounted by now)."""
        if self.dir.exists():
            shutil.rmtree(self.dir)


@atexit.register
def _stop_live_engines() -> None:
    """Safety net: stop every LocalEngine this process started and did not stop."""
    for engine in list(_LIVE):
        engine.stop()
