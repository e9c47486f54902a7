"""A fake container stack for the fault kinds' tests: containers with states, networks with IPs, iptables
rules, a /data volume and an orchestrator that moves a corrupt registry aside. It records every call and
can ignore a fault (`ignore={"pause", ...}`), so a test can show that verify() then does not hold."""
from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from harness.errors import NemesisError
from harness.nemesis.kinds_network import PROBE_CODE
from apiary_suite.stackops import NETWORKS, SERVICES, SHORT_NETWORKS

SQLITE = b"SQLite format 3\x00"
IGNORABLE = ("disconnect", "connect", "iptables", "pause", "unpause", "kill", "restart", "start", "oom", "chmod",
             "corrupt", "recover", "traffic")


class FakeStack:
    """The seven-service topology of the compose file, simulated."""

    backend = "docker"

    def __init__(self, ignore: set[str] | None = None, services: tuple[str, ...] = SERVICES):
        self.ignore = set(ignore or ())
        unknown = self.ignore - set(IGNORABLE)
        assert not unknown, f"fake cannot ignore {unknown}"
        self.run_id = "fake"
        self.services = list(services)
        self.calls: list[tuple] = []
        self._starts = 0
        self.state = {s: {"status": "running", "exit_code": 0, "oom_killed": False, "started_at": self._stamp()}
                      for s in self.services}
        self.ips = {(s, n): f"10.{SHORT_NETWORKS.index(n)}.0.{i + 2}"
                    for i, s in enumerate(self.services) for n in NETWORKS[s]}
        self.attached = {s: set(NETWORKS[s]) for s in self.services}
        self.rules: dict[str, list[str]] = {s: [] for s in self.services}
        self.counters: dict[tuple[str, str], int] = {}
        self.writable = True
        self.files = ["registry.db"]
        self.header = SQLITE
        self.log_lines: list[str] = []

    def _stamp(self) -> str:
        self._starts += 1
        return f"2024-01-01T00:00:{self._starts:02d}Z"

    def _do(self, what: str) -> bool:
        return what not in self.ignore

    # ---- the Cluster surface the kinds use --------------------------------------------------------
    def network_name(self, short: str) -> str:
        return f"fake_{short}"

    def inspect(self, service: str) -> dict:
        st = self.state[service]
        up = st["status"] in ("running", "paused")
        return {"status": st["status"], "running": st["status"] == "running", "paused": st["status"] == "paused",
                "exit_code": st["exit_code"], "oom_killed": st["oom_killed"], "started_at": st["started_at"],
                "networks": {self.network_name(n): {"ip": self.ips[(service, n)], "aliases": [service]}
                             for n in sorted(self.attached[service])} if up else {}}

    def http_url(self, service: str) -> str:
        return f"http://fake/{service}"

    def logs(self, service: str, since: float | None = None) -> str:
        return "".join(self.log_lines) if service == "orchestrator" else ""

    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        self.calls.append(("kill", service, signal))
        if self._do("kill"):
            self._exit(service, 137)

    def pause(self, service: str) -> None:
        self.calls.append(("pause", service))
        if self._do("pause"):
            self.state[service]["status"] = "paused"

    def unpause(self, service: str) -> None:
        self.calls.append(("unpause", service))
        if self._do("unpause"):
            self.state[service]["status"] = "running"

    def stop(self, service: str, timeout_s: float = 10) -> None:
        self.calls.append(("stop", service))
        self._exit(service, 0)

    def start(self, service: str) -> None:
        self.calls.append(("start", service))
        if self._do("start"):
            self._start(service)

    def restart(self, service: str, timeout_s: float = 10) -> None:
        self.calls.append(("restart", service))
        if self._do("restart"):
            self._exit(service, 0)
            if service.startswith("hive"):   # a hive's SIGTERM cascades SHUTDOWN: its workers exit 0
                for w in self.services:
                    if w.startswith("worker") and set(NETWORKS[w]) & self.attached[service]:
                        self._exit(w, 0)
            self._start(service)

    def disconnect(self, service: str, network: str) -> None:
        self.calls.append(("disconnect", service, network))
        if self._do("disconnect"):
            self.attached[service].discard(network)

    def connect(self, service: str, network: str) -> None:
        self.calls.append(("connect", service, network))
        if self._do("connect") and network not in self.attached[service]:
            self.attached[service].add(network)
            a, b, c, d = self.ips[(service, network)].split(".")
            self.ips[(service, network)] = f"{a}.{b}.{int(c) + 1}.{d}"   # docker hands out a new address

    def exec(self, service: str, cmd: list[str], user: str = "root", check: bool = True) -> Any:
        self.calls.append(("exec", service, tuple(cmd), user))
        status = self.state[service]["status"]
        if status != "running":
            raise NemesisError(f"exec in {service}: container is {status}")
        rc, out = self._run(service, cmd, user)
        if check and rc != 0:
            raise NemesisError(f"exec {cmd!r} in {service} exited {rc}: {out}")
        return SimpleNamespace(exit_code=rc, output=out.encode())

    def volume_shell(self, script: str) -> str:
        self.calls.append(("volume_shell", script))
        if "urandom" in script:
            listing = "\n".join(self.files) + "\n--apiary-header--\n" + self.header[:16].hex(" ") + "\n"
            if self._do("corrupt"):
                self.header = bytes(range(200, 216))
            return listing
        if "head -c 16" in script:
            return " ".join(f"{b:02x}" for b in self.header[:16]) + "\n"
        if "chmod -R u+w" in script:
            self.writable = True
            return ""
        raise AssertionError(f"fake volume shell cannot run {script!r}")

    def put_faults(self, url: str, body: dict, timeout_s: float = 5.0) -> int:
        """Stands in for harness.nemesis.kinds_process.send_trigger of x-apiary.oom (the tests monkeypatch it)."""
        service = url.split("/")[-2]
        self.calls.append(("put_faults", service, body))
        if body.get("oom") == "now" and self._do("oom"):
            self._exit(service, 137, oom=True)
        return 200

    # ---- simulation -------------------------------------------------------------------------------
    def _exit(self, service: str, code: int, oom: bool = False) -> None:
        self.state[service].update(status="exited", exit_code=code, oom_killed=oom)
        self.rules[service] = []   # the network namespace goes with the container

    def _start(self, service: str) -> None:
        self.state[service].update(status="running", exit_code=0, oom_killed=False, started_at=self._stamp())
        if service == "orchestrator" and self.header != SQLITE and self._do("recover"):
            self.files.append(f"registry.db.corrupt-{self._starts}")
            self.log_lines.append('{"event": "registry.corrupt", "moved_to": "/data/registry.db.corrupt"}\n')
            self.header = SQLITE

    def owner_of(self, ip: str) -> tuple[str, str] | None:
        """(service, network) currently holding an IP."""
        for (s, n), addr in self.ips.items():
            if addr == ip and n in self.attached[s] and self.state[s]["status"] in ("running", "paused"):
                return s, n
        return None

    def probe(self, src: str, ip: str) -> str:
        owner = self.owner_of(ip)
        if owner is None:
            return "timeout"
        dst, net = owner
        if net not in self.attached[src]:
            return "unreachable 113"
        src_ip = self.ips[(src, net)]
        drops = [r for r in self.rules[dst] if "-j DROP" in r and "statistic" not in r and f"-s {src_ip} " in r]
        drops += [r for r in self.rules[src] if "-j DROP" in r and "statistic" not in r and f"-d {ip} " in r]
        if drops or self.state[dst]["status"] == "paused":
            return "timeout"
        return "connected"

    def traffic(self, service: str, packets: int = 10) -> None:
        if not self._do("traffic"):
            return
        for rule in self.rules[service]:
            tag = rule.split("--comment ")[1].split()[0]
            if tag.endswith("-seen"):
                self.counters[(service, tag)] = self.counters.get((service, tag), 0) + packets
            elif "statistic" in rule:
                p = float(rule.split("--probability ")[1].split()[0])
                self.counters[(service, tag)] = self.counters.get((service, tag), 0) + max(1, round(packets * p))

    def listing(self, service: str) -> str:
        lines = ["Chain APIARY_NEMESIS (2 references)", "    pkts      bytes target     prot opt in     out"]
        for rule in self.rules[service]:
            tag = rule.split("--comment ")[1].split()[0]
            n = self.counters.get((service, tag), 0)
            lines.append(f"{n:8d} {n * 60:8d} {'DROP' if '-j DROP' in rule else '    '}  6 -- eth+ * /* {tag} */")
        return "\n".join(lines) + "\n"

    def _run(self, service: str, cmd: list[str], user: str) -> tuple[int, str]:
        if cmd[:4] == ["python3", "-I", "-S", "-c"] and cmd[4] == PROBE_CODE:
            return 0, self.probe(service, cmd[5]) + "\n"
        if cmd[:3] == ["iptables", "-w", "-L"]:
            return 0, self.listing(service)
        if cmd == ["ls", "-1", "/data"]:
            return 0, "\n".join(self.files) + "\n"
        assert cmd[:2] == ["sh", "-c"], f"fake cannot exec {cmd!r}"
        return self._script(service, cmd[2], user)

    def _script(self, service: str, script: str, user: str) -> tuple[int, str]:
        if "for _ in range(int(sys.argv[3]))" in script:   # TRAFFIC_CODE, then maybe the rule listing
            self.traffic(service)
            return 0, self.listing(service) if "iptables -w -L APIARY_NEMESIS" in script else ""
        rc = 0
        for line in script.splitlines():
            line = line.strip()
            if line in ("set -e", "") or " -N APIARY_NEMESIS" in line or re.search(r"-C (INPUT|OUTPUT) -j", line):
                continue
            if m := re.fullmatch(r"iptables -w -A APIARY_NEMESIS (.+)", line):
                if self._do("iptables"):
                    self.rules[service].append(m.group(1) + " ")
            elif m := re.fullmatch(r"while iptables -w -D APIARY_NEMESIS (.+?) 2>/dev/null; do :; done", line):
                self.rules[service] = [r for r in self.rules[service] if r != m.group(1) + " "]
            elif line.startswith("! iptables -w -C"):
                specs = re.findall(r"! iptables -w -C APIARY_NEMESIS (.+?) 2>/dev/null", line)
                rc = 1 if any(s + " " in self.rules[service] for s in specs) else 0
            elif line == "chmod -R a-w /data":
                self.writable = self.writable and not self._do("chmod")
            elif line == "chmod -R u+w /data":
                self.writable = True
            elif line.startswith("touch /data/"):
                rc = 0 if (self.writable or user == "root") else 1
                return rc, "" if rc == 0 else "touch: cannot touch '/data/.apiary-probe': Permission denied\n"
            else:
                raise AssertionError(f"fake cannot run script line {line!r}")
        return rc, ""
