"""A fake stack for the link-quality kinds' tests whose links are real loopback TCP (no Docker).

Every service has a loopback address per network (127.A.B.x, A and B drawn per stack so parallel test
processes do not meet) and each network a gateway address there (the harness's "host end", where the
steering runs its proxies when it cannot enter a namespace: probes.enabled False). The orchestrator and
the hives run a ZmtpPeer on each of their addresses: a listener that sends a ZMTP signature's 10 bytes on
accept, the rest of a 64-byte greeting once 11 bytes came in, hands a peer's identity over to its newest
connection (a ROUTER with ROUTER_HANDOVER) and echoes everything after the greeting. Every hive and
worker keeps a ServiceLink to its upstream: connected from its own address to where its nat rules send
it, greeted, then 64 bytes every 20 ms, reconnecting whenever it is killed (`ss -K`), reset or silent.

exec() runs only the sh scripts the steering sends (iptables filter/nat chain, jump and rule lines, the
`! iptables -C` checks, `ss -K`), keeping each service's rules, and raises AssertionError on any other
line (recorded in `errors` too: protocol.run turns exceptions into exit codes). `ignore` makes a fault
not take effect: "dnat" (the nat rule is kept but never routes a connection), "kill" (`ss -K` kills
nothing). close() stops every thread and socket.
"""
from __future__ import annotations

import dataclasses
import errno
import itertools
import os
import random
import re
import shlex
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

from harness.errors import NemesisError
from harness.nemesis.protocol import CHAIN
from harness.nemesis.steering import ZMTP_SIGNATURE
from harness.stack import default_topology

IGNORABLE = ("dnat", "kill")
MESSAGE_BYTES = 64            # one service message (echoed back)
PACE_S = 0.02                 # between a service's messages
IO_TIMEOUT_S = 1.0            # a silent connection is given up after this (ZMTP heartbeats would)
RETRY_S = 0.02                # a service's reconnect interval
PEER_IDLE_S = 10.0            # a ZmtpPeer connection silent this long is closed
READY_S = 5.0                 # how long a new FakeStack waits for every service link to be up
HOOKS = {"filter": ("INPUT", "OUTPUT"), "nat": ("OUTPUT",)}
_rng = random.Random(os.urandom(8))
_count = itertools.count(1)


def greeting(identity: bytes = b"") -> bytes:
    """A 64-byte ZMTP 3.0 NULL greeting; its filler carries the sender's identity (the fake's READY)."""
    return ZMTP_SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\x00" + identity[:31].ljust(31, b"\0")


def recv_exactly(sock: socket.socket, n: int, got: bytes = b"") -> bytes:
    """Read until n bytes are in (ConnectionError at EOF)."""
    while len(got) < n:
        part = sock.recv(65536)
        if not part:
            raise ConnectionError("eof")
        got += part
    return got


def quiet_close(sock: socket.socket) -> None:
    for step in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            step()
        except OSError:
            pass


class ZmtpPeer:
    """A listener on ip:port that greets like a ZMTP peer, hands identities over and echoes."""

    def __init__(self, ip: str, port: int, stop: threading.Event):
        self.stop, self.ip = stop, ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.bind((ip, port))
            self.sock.listen(64)
        except OSError:
            self.sock.close()
            raise
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.by_identity: dict[bytes, socket.socket] = {}
        self.accepted = 0
        self.handovers = 0
        threading.Thread(target=self._serve, name=f"zmtp-peer-{ip}:{self.port}", daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.add(conn)
                self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), name=f"zmtp-conn-{self.ip}", daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        identity = b""
        conn.settimeout(PEER_IDLE_S)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ours = greeting()
            conn.sendall(ours[:10])
            got = recv_exactly(conn, 11)
            conn.sendall(ours[10:])
            got = recv_exactly(conn, 64, got)
            identity = got[33:64].rstrip(b"\0")
            if identity:
                self._hand_over(identity, conn)
            rest = got[64:]
            if rest:
                conn.sendall(rest)
            while not self.stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        except (OSError, ConnectionError):
            return
        finally:
            with self.lock:
                self.conns.discard(conn)
                if identity and self.by_identity.get(identity) is conn:
                    del self.by_identity[identity]
            quiet_close(conn)

    def _hand_over(self, identity: bytes, conn: socket.socket) -> None:
        """The newest connection of an identity wins; the older one is closed (ROUTER_HANDOVER)."""
        with self.lock:
            old, self.by_identity[identity] = self.by_identity.get(identity), conn
            if old is not None:
                self.handovers += 1
                try:
                    old.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        quiet_close(self.sock)
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ServiceLink:
    """A service's own connection to its upstream (src -> dst_ip:port), routed by its nat rules."""

    def __init__(self, stack: "FakeStack", service: str, dst: str, src_ip: str, dst_ip: str, port: int):
        self.stack, self.service, self.dst = stack, service, dst
        self.src_ip, self.dst_ip, self.port = src_ip, dst_ip, port
        self.sock: socket.socket | None = None
        self.doomed = False
        self.peer: tuple[str, int] | None = None       # the address the live, greeted connection goes to
        self.history: list[tuple[str, int]] = []       # every address it was greeted at, in order
        self.connects = 0
        self.thread = threading.Thread(target=self._run, name=f"service-link-{service}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stop = self.stack.stop
        while not stop.is_set():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(IO_TIMEOUT_S)
            with self.stack.lock:                      # the route and the socket are one step for `ss -K`
                target = self.stack.route(self.service, self.dst_ip, self.port)
                self.sock, self.doomed = s, False
            try:
                s.bind((self.src_ip, 0))
                s.connect(target)
                self.connects += 1
                self._talk(s, target)
            except (OSError, ConnectionError):
                pass
            finally:
                with self.stack.lock:
                    self.sock, self.peer = None, None
                quiet_close(s)
            stop.wait(RETRY_S)

    def _talk(self, s: socket.socket, target: tuple[str, int]) -> None:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = recv_exactly(s, 10)
        s.sendall(greeting(self.service.encode()))
        recv_exactly(s, 64, got)
        with self.stack.lock:
            if self.doomed:
                return
            self.peer = target
            self.history.append(target)
        while not self.stack.stop.is_set() and not self.doomed:
            s.sendall(b"m" * MESSAGE_BYTES)
            recv_exactly(s, MESSAGE_BYTES)
            if self.stack.stop.wait(PACE_S):
                return

    def kill(self) -> bool:
        """`ss -K` of this connection (call with the stack's lock held); True when there was one."""
        if self.sock is None:
            return False
        self.doomed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True


class FakeStack:
    """The compose topology's services on loopback, with real listeners, service links and iptables rules."""

    backend = "docker"

    def __init__(self, ignore: set[str] | None = None):
        self.ignore = set(ignore or ())
        unknown = self.ignore - set(IGNORABLE)
        assert not unknown, f"fake cannot ignore {unknown}"
        base = default_topology()
        self.a, self.b = _rng.randrange(16, 250), _rng.randrange(0, 256)
        self.project = f"fakeq-{os.getpid()}-{next(_count)}-{self.a}-{self.b}"
        self.services = list(base.names)
        self.nets = {s: list(base.networks_of(s)) for s in self.services}
        self.ips = {(s, n): f"127.{self.a}.{self.b}.{10 * base.networks.index(n) + i + 1}"
                    for i, s in enumerate(self.services) for n in self.nets[s]}
        self.gateways = {n: f"127.{self.a}.{self.b}.{200 + i}" for i, n in enumerate(base.networks)}
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.tables = {s: {t: {"chains": set(), "hooks": {h: [] for h in HOOKS[t]}, "rules": {}} for t in HOOKS}
                       for s in self.services}
        self.calls: list[tuple] = []
        self.kills: list[dict] = []
        self.errors: list[str] = []
        self.peers: dict[str, list[ZmtpPeer]] = {}
        self.links: dict[str, ServiceLink] = {}
        try:
            self.topology = dataclasses.replace(base, listen={**base.listen, **self._listen(base)})
            self._connect_services(base)
            self.wait_ready(READY_S)
        except BaseException:
            self.close()
            raise

    # ---- set-up ----------------------------------------------------------------------------------
    def _listen(self, topo) -> dict[str, int]:
        """A ZmtpPeer on every address of each service that something connects to; role -> its port."""
        ports = {}
        for role in dict.fromkeys(topo.role(s) for s in self.services if self._upstream_of_someone(topo, s)):
            members = [s for s in self.services if topo.role(s) == role]
            for _ in range(20):
                made: list[tuple[str, ZmtpPeer]] = []
                port = 0
                try:
                    for s in members:
                        for n in self.nets[s]:
                            made.append((s, ZmtpPeer(self.ips[(s, n)], port, self.stop)))
                            port = made[-1][1].port
                except OSError as exc:
                    for _, p in made:
                        p.close()
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    continue
                for s, p in made:
                    self.peers.setdefault(s, []).append(p)
                ports[role] = port
                break
            else:
                raise RuntimeError(f"no common free port for role {role} on its loopback addresses")
        return ports

    def _upstream_of_someone(self, topo, service: str) -> bool:
        return any(topo.rank(o) == topo.rank(service) - 1 and set(topo.cuttable_networks(o))
                   & set(topo.cuttable_networks(service)) for o in self.services)

    def _connect_services(self, topo) -> None:
        for s in self.services:
            mine = topo.cuttable_networks(s)
            up = [d for d in self.services if topo.rank(d) == topo.rank(s) + 1 and set(mine) & set(topo.cuttable_networks(d))]
            if not up:
                continue
            net = next(n for n in mine if n in topo.cuttable_networks(up[0]))
            self.links[s] = ServiceLink(self, s, up[0], self.ips[(s, net)], self.ips[(up[0], net)],
                                        self.topology.listen_port(up[0]))

    def wait_ready(self, timeout_s: float) -> None:
        """Every service link greeted directly at its upstream; RuntimeError at the deadline."""
        deadline = time.monotonic() + timeout_s
        while not all(lk.peer == (lk.dst_ip, lk.port) for lk in self.links.values()):
            if time.monotonic() >= deadline:
                raise RuntimeError(f"fake service links not up: {[(k, v.peer) for k, v in self.links.items()]}")
            self.stop.wait(0.02)

    def close(self) -> None:
        """Stop every thread and close every socket (idempotent)."""
        self.stop.set()
        for peers in self.peers.values():
            for p in peers:
                p.close()
        with self.lock:
            for lk in self.links.values():
                lk.kill()
        for lk in self.links.values():
            lk.thread.join(IO_TIMEOUT_S + 1)

    # ---- the stack surface the steering uses -------------------------------------------------------
    def network_name(self, short: str) -> str:
        return f"{self.project}_{short}"

    def inspect(self, service: str) -> dict:
        return {"status": "running", "running": True, "paused": False, "exit_code": 0, "oom_killed": False,
                "started_at": "2026-01-01T00:00:00Z",
                "networks": {self.network_name(n): {"ip": self.ips[(service, n)], "aliases": [service],
                                                    "gateway": self.gateways[n]} for n in self.nets[service]}}

    def container(self, service: str) -> Any:
        assert service in self.services, service
        return SimpleNamespace(attrs={"State": {"Pid": os.getpid()}})

    def exec(self, service: str, cmd: list[str], user: str = "root", check: bool = True) -> Any:
        self.calls.append(("exec", service, tuple(cmd), user))
        try:
            assert cmd[:2] == ["sh", "-c"] and len(cmd) == 3, f"fake cannot exec {cmd!r}"
            with self.lock:
                rc = self._script(service, cmd[2])
        except AssertionError as exc:
            self.errors.append(str(exc))
            raise
        if check and rc != 0:
            raise NemesisError(f"exec {cmd!r} in {service} exited {rc}")
        return SimpleNamespace(exit_code=rc, output=b"")

    # ---- what the tests look at ----------------------------------------------------------------------
    def peer_of(self, service: str) -> tuple[str, int] | None:
        """Where the service's own connection goes now (None while it reconnects)."""
        return self.links[service].peer

    def rules_of(self, service: str) -> list[str]:
        """The service's rules in its APIARY_NEMESIS chains, as "table: spec"."""
        with self.lock:
            return [f"{t}: {spec}" for t, tab in self.tables[service].items()
                    for specs in tab["rules"].values() for _, spec in specs]

    # ---- the kernel: routing by the nat rules, `ss -K` ---------------------------------------------
    def route(self, service: str, ip: str, port: int) -> tuple[str, int]:
        """Where a new connection from service to ip:port goes: the first DNAT rule matching it, or there."""
        nat = self.tables[service]["nat"]
        if "dnat" in self.ignore:
            return ip, port
        for chain in nat["hooks"]["OUTPUT"]:
            for rule, _ in nat["rules"].get(chain, []):
                r = dict(rule)
                if (r.get("target") == "DNAT" and r.get("-p") == "tcp" and r.get("-d") == ip and r.get("--dport") == port
                        and r.get("not_mark", None) != 0):
                    host, _, to_port = r["--to-destination"].rpartition(":")
                    return host, int(to_port)
        return ip, port

    def _rst_dropped(self, service: str, ip: str, port: int) -> bool:
        flt = self.tables[service]["filter"]
        return any(dict(rule).get("target") == "DROP" and dict(rule).get("--tcp-flags") == ("RST", "RST")
                   and dict(rule).get("-d") == ip and dict(rule).get("--dport") == port
                   for chain in flt["hooks"]["OUTPUT"] for rule, _ in flt["rules"].get(chain, []))

    def _ss_kill(self, service: str, tokens: list[str]) -> int:
        assert len(tokens) == 7 and tokens[:3] == ["ss", "-K", "dst"] and tokens[4:6] == ["dport", "="] \
            and tokens[6].startswith(":"), f"fake cannot run {' '.join(tokens)!r}"
        ip, port = tokens[3], int(tokens[6][1:])
        killed = 0
        lk = self.links.get(service)
        if "kill" not in self.ignore and lk is not None and (lk.dst_ip, lk.port) == (ip, port):
            killed = int(lk.kill())
        self.kills.append({"service": service, "dst": (ip, port), "killed": killed,
                           "rst_dropped": self._rst_dropped(service, ip, port)})
        return 0

    # ---- sh and iptables -------------------------------------------------------------------------------
    def _script(self, service: str, script: str) -> int:
        errexit, rc = False, 0
        for line in script.split("\n"):
            line = line.strip()
            if line == "set -e":
                errexit = True
                continue
            if m := re.fullmatch(r"while (.+); do :; done", line):
                for _ in range(100):
                    if self._command(service, m.group(1)) != 0:
                        break
                else:
                    raise AssertionError(f"fake: endless loop {line!r}")
                rc = 0
                continue
            parts = re.split(r" (\|\||&&) ", line)
            rc = self._command(service, parts[0])
            for op, cmd in zip(parts[1::2], parts[2::2]):
                if (op == "&&") == (rc == 0):
                    rc = self._command(service, cmd)
            if errexit and rc != 0 and len(parts) == 1 and not line.startswith("!"):
                return rc
        return rc

    def _command(self, service: str, text: str) -> int:
        tokens = [t for t in shlex.split(text) if t not in ("2>/dev/null", ">/dev/null")]
        if tokens == ["true"]:
            return 0
        if tokens[:1] == ["!"]:
            return 0 if self._command(service, shlex.join(tokens[1:])) != 0 else 1
        if tokens[:1] == ["ss"]:
            return self._ss_kill(service, tokens)
        assert tokens[:2] == ["iptables", "-w"], f"fake cannot run {text!r}"
        tokens = tokens[2:]
        table = "filter"
        if tokens[:1] == ["-t"]:
            table, tokens = tokens[1], tokens[2:]
        assert table in HOOKS and len(tokens) >= 2, f"fake cannot run {text!r}"
        return self._iptables(self.tables[service][table], table, tokens[0], tokens[1], tokens[2:], text)

    def _iptables(self, tab: dict, table: str, op: str, chain: str, args: list[str], text: str) -> int:
        if op == "-N":
            assert chain == CHAIN and not args, f"fake cannot run {text!r}"
            if chain in tab["chains"]:
                return 1
            tab["chains"].add(chain)
            tab["rules"][chain] = []
            return 0
        if chain in tab["hooks"]:                                   # a jump from a built-in hook
            assert op in ("-C", "-I", "-D") and args[-2:] == ["-j", CHAIN] and args[:-2] == (["1"] if op == "-I" else []), \
                f"fake cannot run {text!r}"
            jumps = tab["hooks"][chain]
            if op == "-C":
                return 0 if CHAIN in jumps else 1
            if CHAIN not in tab["chains"]:
                return 1
            if op == "-I":
                jumps.insert(0, CHAIN)
                return 0
            if CHAIN in jumps:
                jumps.remove(CHAIN)
                return 0
            return 1
        assert chain == CHAIN and op in ("-A", "-C", "-D"), f"fake cannot run {text!r}"
        rule = parse_rule(table, args, text)
        if chain not in tab["chains"]:
            return 1
        rules = tab["rules"][chain]
        present = [i for i, (r, _) in enumerate(rules) if r == rule]
        if op == "-A":
            rules.append((rule, " ".join(args)))
            return 0
        if op == "-D" and present:
            del rules[present[0]]
        return 0 if present else 1


def parse_rule(table: str, args: list[str], text: str) -> frozenset:
    """An iptables rule spec of the steering's grammar, as comparable items; AssertionError otherwise."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        t, nxt = args[i], args[i + 1] if i + 1 < len(args) else None
        if t in ("-p", "-d", "-s", "--comment", "--to-destination") and nxt is not None:
            out[t], i = nxt, i + 2
        elif t == "--dport" and nxt is not None and nxt.isdigit():
            out[t], i = int(nxt), i + 2
        elif t == "-m" and nxt in ("mark", "comment"):
            i += 2
        elif t == "!" and nxt == "--mark" and i + 2 < len(args):
            out["not_mark"], i = int(args[i + 2], 0), i + 3
        elif t == "--tcp-flags" and i + 2 < len(args):
            out[t], i = (args[i + 1], args[i + 2]), i + 3
        elif t == "-j" and nxt in ("DROP", "DNAT"):
            out["target"], i = nxt, i + 2
        else:
            raise AssertionError(f"fake cannot parse {t!r} in {text!r}")
    ok = out.get("target") == ("DNAT" if table == "nat" else "DROP") and ("--to-destination" in out) == (table == "nat")
    assert ok and ("--dport" not in out or out.get("-p") == "tcp"), f"fake cannot take rule {text!r}"
    return frozenset(out.items())
