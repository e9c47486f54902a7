"""Steering one TCP link of the stack through the harness's Toxiproxy-compatible proxy (harness/toxiproxy),
the mechanism of the link-quality kinds (kinds_quality.py, docs/netquality.md).

A link "a|b" is the connection its lower-role side (src: a hive toward the orchestrator, a worker toward
its hive) makes to the other's (dst's) listening port. Steering it:
1. a proxy on the harness's ToxiServer, its sockets made in src's network namespace (a thread that
   entered it once): listening on src's address, its upstream sockets marked MARK; a twin proxy with the
   same toxics whose upstream is a sink the harness opens in dst's namespace (for throughput probes);
2. in src's namespace (one docker exec): a DNAT rule in nat OUTPUT (chain APIARY_NEMESIS) sending src's
   new connections to dst:port to the proxy, marked sockets excepted; a rule dropping src's RSTs to
   dst:port; then `ss -K` kills src's established connections to dst:port. ZeroMQ reconnects, through
   the proxy, and dst (a ROUTER with ROUTER_HANDOVER) hands the peer's identity over to the new
   connection: dst never sees the old one end, so it routes on. The RST rule goes once the steered
   connection carries traffic both ways.
Unsteering deletes the DNAT rule and releases the proxy's links: src's side is reset (it reconnects
directly), dst's side is held open and silent for HANDOVER_S so dst hands over again first.
A message dst sends in the ~0.1 s between the kill and the reconnect is lost with the old connection.

Where the harness cannot enter a namespace (not root on the Docker host, or probes.enabled False) the
proxies run in the harness's own namespace instead, on the host's end of the shared bridge (the network's
gateway address): the DNAT rule sends src's connection there, the proxy connects to dst across the bridge
(no mark needed: its sockets are not in src's OUTPUT chain), the sink listens on the gateway too, and
the greeting probes go to the proxy's listener. Only the rules and `ss -K` need the container, by docker
exec as before. `via` says which ("netns" or "host").
"""
from __future__ import annotations

import queue
import socket
import statistics
import threading
import time
import concurrent.futures as futures
from typing import Any, Callable

from harness.errors import NemesisError
from harness.nemesis.kinds_network import add_rules_script, ip_on, networks_of, new_tag, remove_rules_script, shared
from harness.nemesis.probes import container_pid, in_netns
from harness.nemesis.protocol import CHAIN, DOWN, listen_port, parse_target, poll, rank, run
from harness.toxiproxy import ToxiServer, make_toxic

MARK = 0x41504958                 # SO_MARK of the proxy's upstream sockets: the DNAT rule leaves them alone
ZMTP_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
PROBES = 5                        # greeting probes per measurement, made at once (their median counts)
HANDOVER_S = 1.0                  # unsteer: how long a released link holds dst's side open
SETTLED_BYTES = 128               # bytes each way on a steered link: past ZMTP's greeting (64) and handshake
_server: ToxiServer | None = None
_lock = threading.Lock()
STEERED: dict[tuple[str, str], "Steering"] = {}


def server() -> ToxiServer:
    """The harness's ToxiServer (one per process, API on 127.0.0.1), started on first use."""
    global _server
    with _lock:
        if _server is None:
            srv = ToxiServer()
            srv.start("127.0.0.1", 0)
            _server = srv
        return _server


def stop_server() -> None:
    """Stop the harness's ToxiServer if it runs (a later server() starts a new one); its proxies go with it."""
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


def api_url() -> str:
    srv = server()
    return f"http://127.0.0.1:{srv.api.sockets[0].getsockname()[1]}" if srv.api else ""


class NetnsSockets:
    """Makes TCP sockets in process pid's network namespace, from one thread that entered it once."""

    def __init__(self, pid: int):
        self.requests: queue.Queue = queue.Queue()
        ready: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: in_netns(pid, lambda: self._serve(ready), 1e9) or ready.put(False), daemon=True,
                         name=f"netns-sockets-{pid}").start()
        try:
            ok = ready.get(timeout=3)      # False at once when the namespace cannot be entered
        except queue.Empty:
            ok = False
        if not ok:
            raise NemesisError(f"the harness cannot enter the network namespace of pid {pid} "
                               "(it needs root on the Docker host; see docs/netquality.md)")

    def _serve(self, ready: queue.Queue) -> bool:
        ready.put(True)
        while (item := self.requests.get()) is not None:
            out, done = item
            try:
                out.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            except OSError as exc:
                out.append(exc)
            done.set()
        return True

    def make(self) -> socket.socket:
        out: list = []
        done = threading.Event()
        self.requests.put((out, done))
        if not done.wait(2) or isinstance(out[0], OSError):
            raise OSError(f"no socket from the namespace thread: {out}")
        return out[0]

    def close(self) -> None:
        self.requests.put(None)


class HostSockets:
    """Plain TCP sockets in the harness's own namespace (the fallback when it cannot enter a container's)."""

    @staticmethod
    def make() -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def close(self) -> None:
        """Nothing to stop: there is no namespace thread."""


def host_end(gateway: str | None, target: str, net: str) -> str:
    """The harness's own address on a bridge (its gateway), checked bindable here; NemesisError otherwise."""
    if not gateway:
        raise NemesisError(f"{target}: the harness cannot enter the containers' namespaces and {net} has no gateway "
                           "address to run the proxy on (run the harness as root on the Docker host)")
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((gateway, 0))
    except OSError as exc:
        raise NemesisError(f"{target}: the harness cannot enter the containers' namespaces, and {net}'s gateway "
                           f"{gateway} is not an address of this host ({exc.strerror}): the engine is not local; "
                           "run the harness as root on the Docker host") from exc
    finally:
        probe.close()
    return gateway


def greeting_times(sock_of: Callable[[], socket.socket], src_ip: str, ip: str, port: int,
                   timeout_s: float) -> tuple[float, float] | None:
    """(s to dst's first 10 ZMTP greeting bytes after connect, s to its answer to our signature + major
    version) on a TCP connection from src_ip; None when it could not be made."""
    s = sock_of()
    try:
        s.bind((src_ip, 0))
        s.settimeout(timeout_s)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect((ip, port))
        t0 = time.perf_counter()
        got = b""
        while len(got) < 10:
            part = s.recv(64)
            if not part:
                return None
            got += part
        t1 = time.perf_counter()
        s.sendall(ZMTP_SIGNATURE + b"\x03")
        more = len(got) - 10
        while more < 1:
            part = s.recv(64)
            if not part:
                return None
            more += len(part)
        return t1 - t0, time.perf_counter() - t1
    except OSError:
        return None
    finally:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        s.close()


def measure_greeting(sock_of, src_ip: str, ip: str, port: int, timeout_s: float) -> dict | None:
    """The least first/reply times (ms) of PROBES greeting probes made at once (a toxic never delivers early,
    and a loaded machine or the harness's own threads only add delay: the least delayed probe is the toxic's
    figure; the 30-minute soak's median was 17 ms late at 20 ms under its own client load), with the
    medians as evidence; None when none succeeded."""
    with futures.ThreadPoolExecutor(PROBES) as pool:
        rows = [r for r in pool.map(lambda _: greeting_times(sock_of, src_ip, ip, port, timeout_s), range(PROBES)) if r]
    if not rows:
        return None
    return {"first_ms": round(min(r[0] for r in rows) * 1000, 3), "reply_ms": round(min(r[1] for r in rows) * 1000, 3),
            "first_median_ms": round(statistics.median(r[0] for r in rows) * 1000, 3),
            "reply_median_ms": round(statistics.median(r[1] for r in rows) * 1000, 3), "n": len(rows)}


class Sink:
    """A listener in dst's namespace: SEND n\\n -> n bytes; anything else is read and its length answered at EOF."""

    def __init__(self, sock: socket.socket, ip: str):
        self.sock = sock
        self.sock.bind((ip, 0))
        self.sock.listen(8)
        self.addr = f"{ip}:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, name="quality-sink", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _handle(conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            with conn:
                head = conn.recv(64)
                if head.startswith(b"SEND "):
                    conn.sendall(b"s" * int(head.split()[1]))
                    return
                n = len(head)
                while data := conn.recv(65536):
                    n += len(data)
                conn.sendall(str(n).encode())
        except (OSError, ValueError):
            return

    def close(self) -> None:
        self.sock.close()


def transfer_rate(sock_of, src_ip: str, addr: str, stream: str, size: int, timeout_s: float) -> float | None:
    """KB/s of `size` bytes through addr from src_ip: upstream sends to the sink, downstream asks the sink
    to send; None when it failed."""
    host, port = addr.rsplit(":", 1)
    s = sock_of()
    try:
        s.bind((src_ip, 0))
        s.settimeout(timeout_s)
        s.connect((host, int(port)))
        t0 = time.perf_counter()
        if stream == "downstream":
            s.sendall(b"SEND %d\n" % size)
            got = 0
            while data := s.recv(65536):
                got += len(data)
        else:
            s.sendall(b"u" * size)
            s.shutdown(socket.SHUT_WR)
            got = int(s.recv(64) or 0)
        took = time.perf_counter() - t0
    except (OSError, ValueError):
        return None
    finally:
        s.close()
    return got / took / 1000 if got >= size else None


def link_ends(stack: Any, target: str) -> tuple[str, str]:
    """(src, dst) of a link target: src connects to dst (the lower role connects to the higher)."""
    a, b = parse_target(stack, target)
    if b is None or b == "*":
        raise NemesisError(f"bad target {target!r}: want a link 'a|b'")
    if rank(a, stack) == rank(b, stack):
        raise NemesisError(f"bad target {target!r}: {a} and {b} do not connect to each other")
    return (b, a) if rank(a, stack) > rank(b, stack) else (a, b)


def steer_script(rule: str, rst_rule: str, dst_ip: str, port: int) -> list[str]:
    """sh -c argv: the RST rule (filter chain), the DNAT rule (nat chain, jumped to from OUTPUT), then
    src's connections to dst:port killed."""
    lines = [*add_rules_script([rst_rule])[2].split("\n"), f"iptables -w -t nat -N {CHAIN} 2>/dev/null || true",
             f"iptables -w -t nat -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -w -t nat -I OUTPUT 1 -j {CHAIN}",
             f"iptables -w -t nat -A {CHAIN} {rule}", f"ss -K dst {dst_ip} dport = :{port} >/dev/null"]
    return ["sh", "-c", "\n".join(lines)]


def unsteer_script(rule: str) -> list[str]:
    return ["sh", "-c", f"while iptables -w -t nat -D {CHAIN} {rule} 2>/dev/null; do :; done\n"
                        f"! iptables -w -t nat -C {CHAIN} {rule} 2>/dev/null"]


def netns_sockets(pid: int) -> NetnsSockets | None:
    """Sockets made inside the container's network namespace; None where this process cannot enter it
    (the proxy then runs on the host end of the bridge)."""
    try:
        return NetnsSockets(pid)
    except NemesisError:
        return None


class Steering:
    """One link steered through a proxy (and its twin); toxics go on both. See the module docstring."""

    def __init__(self, stack: Any, target: str):
        self.stack, self.target = stack, target
        self.src, self.dst = link_ends(stack, target)
        nets = networks_of(stack, [self.src, self.dst])
        common = shared(nets[self.src], nets[self.dst], stack)
        if not common:
            raise NemesisError(f"{target}: {self.src} and {self.dst} share no attached network")
        self.src_ip, self.dst_ip = ip_on(nets[self.src], common[0], self.src), ip_on(nets[self.dst], common[0], self.dst)
        self.port = listen_port(self.dst, stack)
        pid, dst_pid = container_pid(stack, self.src), container_pid(stack, self.dst)
        if not pid or not dst_pid:
            raise NemesisError(f"{target}: no host PID for {self.src} or {self.dst} (not running?)")
        self.sockets: NetnsSockets | HostSockets
        self.dst_sockets: NetnsSockets | HostSockets
        in_netns = netns_sockets(pid)
        if in_netns is not None:
            self.via, self.bind_ip, self.sink_ip, self.mark = "netns", self.src_ip, self.dst_ip, MARK
            self.sockets, self.dst_sockets = in_netns, NetnsSockets(dst_pid)
        else:
            gateway = host_end((nets[self.src].get(common[0]) or {}).get("gateway"), target, common[0])
            self.via, self.bind_ip, self.sink_ip, self.mark = "host", gateway, gateway, None
            self.sockets, self.dst_sockets = HostSockets(), HostSockets()
        self.tag = new_tag()
        self.name = f"{getattr(stack, 'project', 'stack')}:{target}:{self.tag}"
        self.proxy: Any = None
        self.twin: Any = None
        self.sink: Sink | None = None
        self.rule = self.rst_rule = ""
        self.rule_in = self.rst_in = False
        self.baseline: dict | None = None
        self.evidence: dict = {}

    # ---- steer / unsteer -----------------------------------------------------------------------
    def steer(self, settle_s: float = 5.0) -> "Steering":
        """Measure the direct baseline, start the proxies, move src's connection onto the proxy and wait
        until it carries traffic; NemesisError (after undoing what was done) on failure."""
        srv = server()
        try:
            self.baseline = measure_greeting(self.sockets.make, self.bind_ip, self.dst_ip, self.port, 2.0)
            self.proxy = srv.call(srv.create({"name": self.name, "listen": f"{self.bind_ip}:0",
                                              "upstream": f"{self.dst_ip}:{self.port}"}, sockets=self.sockets.make,
                                             mark=self.mark))
            self.sink = Sink(self.dst_sockets.make(), self.sink_ip)
            self.twin = srv.call(srv.create({"name": self.name + ":twin", "listen": f"{self.bind_ip}:0",
                                             "upstream": self.sink.addr}, sockets=self.sockets.make, mark=self.mark))
            self.rule = (f"-p tcp -d {self.dst_ip} --dport {self.port} -m mark ! --mark {MARK} -m comment --comment "
                         f"{self.tag} -j DNAT --to-destination {self.proxy.listen}")
            self.rst_rule = (f"-p tcp -d {self.dst_ip} --dport {self.port} --tcp-flags RST RST -m comment --comment "
                             f"{self.tag}-rst -j DROP")
            t0 = time.monotonic()
            self.rule_in = self.rst_in = True                       # unsteer() removes whatever got in
            rc, out = run(self.stack, self.src, steer_script(self.rule, self.rst_rule, self.dst_ip, self.port))
            if rc != 0:
                raise NemesisError(f"{self.target}: steering rules in {self.src} exited {rc}: {out.strip()[-300:]}")
            settled, links = poll(self.settled, settle_s)
            rc, out = run(self.stack, self.src, remove_rules_script([self.rst_rule]))
            if rc != 0:
                raise NemesisError(f"{self.target}: removing the RST rule in {self.src} exited {rc}: {out.strip()[-300:]}")
            self.rst_in = False
        except Exception as exc:
            self.unsteer()
            if isinstance(exc, NemesisError):
                raise
            raise NemesisError(f"{self.target}: steering failed: {exc!r}") from exc
        self.evidence = {"proxy": self.name, "listen": self.proxy.listen, "via": self.via, "api": api_url(),
                         "rule": {self.src: self.rule},
                         "steered_s": round(time.monotonic() - t0, 3), "settled": settled, "links": links,
                         "baseline": self.baseline}
        return self

    def unsteer(self) -> list[str]:
        """Remove the rules, release the links (src reconnects directly), delete the proxies; what is left."""
        left: list[str] = []
        for attr, script in (("rst_in", lambda: remove_rules_script([self.rst_rule])),
                             ("rule_in", lambda: unsteer_script(self.rule))):
            if getattr(self, attr):
                rc, out = run(self.stack, self.src, script())
                status = (self.stack.inspect(self.src) or {}).get("status")
                if rc == 0 or status in (*DOWN, None):
                    setattr(self, attr, False)
                else:
                    left.append(f"rule in {self.src} ({status}): {out.strip()[-200:]}")
        srv = server()
        if self.proxy is not None and not self.rule_in and self.proxy.name in srv.proxies:
            try:
                self.evidence["released"] = srv.call(self.proxy.release(HANDOVER_S), HANDOVER_S + 5)
            except Exception as exc:  # noqa: BLE001 - the delete below closes the links anyway
                self.evidence["released"] = repr(exc)[:200]
        for proxy in (self.proxy, self.twin):
            if proxy is not None and proxy.name in srv.proxies:
                try:
                    srv.call(srv.delete(proxy.name))
                except Exception as exc:  # noqa: BLE001 - reported, a later call tries again
                    left.append(f"proxy {proxy.name}: {exc!r}"[:300])
        if not left:
            if self.sink is not None:
                self.sink.close()
            self.sockets.close()
            self.dst_sockets.close()
            if STEERED.get(self.key) is self:
                del STEERED[self.key]
        return left

    @property
    def key(self) -> tuple[str, str]:
        return getattr(self.stack, "project", str(id(self.stack))), self.target

    # ---- toxics and evidence ---------------------------------------------------------------------
    def add_toxics(self, bodies: list[dict]) -> float:
        """Put the toxics on both proxies (their live links too); returns the epoch they went on."""
        srv = server()
        for body in bodies:
            for proxy in (self.proxy, self.twin):
                srv.call(lambda proxy=proxy, body=body: proxy.add_toxic(make_toxic(body)))
        return time.time()

    def remove_toxics(self, names: list[str]) -> list[str]:
        left = []
        srv = server()
        for proxy in (self.proxy, self.twin):
            for name in names:
                try:
                    if proxy.name in srv.proxies and name in proxy.toxics:
                        srv.call(lambda proxy=proxy, name=name: proxy.remove_toxic(name))
                except Exception as exc:  # noqa: BLE001 - reported
                    left.append(f"toxic {name} on {proxy.name}: {exc!r}"[:300])
        return left

    def service_links(self) -> list[dict]:
        """The proxy's live links from src (its service's, when no probe runs)."""
        links = server().call(lambda: [lk.to_json() for lk in list(self.proxy.links)])
        return [lk for lk in links if lk["client"] and lk["client"][0] == self.src_ip]

    def settled(self) -> tuple[bool, list]:
        """(True, links) once src's service reconnected through the proxy and traffic passed both ways."""
        links = self.service_links()
        return any(min(lk["bytes"].values(), default=0) >= SETTLED_BYTES for lk in links), links

    def greeting(self, timeout_s: float) -> dict | None:
        """The greeting probe across the steered link: through src's DNAT rule (netns), or to the proxy (host)."""
        ip, port = (self.dst_ip, self.port) if self.via == "netns" else self.proxy.listen.rsplit(":", 1)
        return measure_greeting(self.sockets.make, self.bind_ip, ip, int(port), timeout_s)

    def rate(self, stream: str, size: int, timeout_s: float) -> float | None:
        return transfer_rate(self.sockets.make, self.bind_ip, self.twin.listen, stream, size, timeout_s)


def steered(stack: Any, target: str) -> Steering | None:
    return STEERED.get((getattr(stack, "project", str(id(stack))), target))


def steer(stack: Any, target: str, settle_s: float = 5.0) -> Steering:
    """The link's steering, made now unless it exists (a scenario may steer before it measures)."""
    found = steered(stack, target)
    if found is not None:
        return found
    s = Steering(stack, target).steer(settle_s)
    STEERED[s.key] = s
    return s
