"""How the network fault kinds prove a fault: TCP connect probes and traffic bursts.

probe() makes a TCP connect from a container's side. Where it can, the harness makes it itself from
inside the container's network namespace: a short-lived thread setns()es into /proc/<pid>/ns/net, binds
the socket to the container's own address there and connects. The packets leave through that
container's interfaces, routes and iptables chains exactly as its own traffic does, so the probe proves
what a probe run with `docker exec` proves, in about a millisecond instead of a container exec (about
100 ms here).

When the harness cannot enter the namespace (not root, a remote or VM-hosted engine, the container gone)
or the bound address is not local there (so it is not that container's namespace), connect_from()
returns None and probe() falls back to `docker exec` of PROBE_CODE in the container. The loss kind makes
its traffic the same way: burst_from() (a burst of connects from the lossy container's namespace), or by
exec of TRAFFIC_CODE where the namespace cannot be entered.
"""
from __future__ import annotations

import concurrent.futures as futures
import ctypes
import errno
import os
import select
import socket
import threading
import time
from typing import Any, Callable

PROBE_CODE = """import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("unreachable", e.errno)
"""
TRAFFIC_CODE = """import select, socket, sys, time
socks = []
for _ in range(int(sys.argv[3])):
    s = socket.socket(); s.setblocking(False)
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
    except BlockingIOError:
        pass
    except OSError:
        s.close(); continue
    socks.append(s)
end = time.monotonic() + float(sys.argv[4])
pending = list(socks)
while pending and time.monotonic() < end:
    done = select.select([], pending, [], max(0.0, end - time.monotonic()))[1]
    pending = [s for s in pending if s not in done]
for s in socks:
    s.close()
print(len(socks))
"""
TRAFFIC_CONNECTS = 40        # connects per burst, all at once (at 10 % loss, P(no drop) = 0.9 ** 40 = 1.5 %)
TRAFFIC_WAIT_S = 0.01        # how long a burst waits for its handshakes (a bridge round trip is far below 1 ms)
BLOCKED = ("timeout", "unreachable")
CLONE_NEWNET = 0x40000000
JOIN_SLACK_S = 2.0           # beyond the connect timeout, the longest a probe thread is waited for
enabled = True               # False forces the docker exec fallback (the fault bench compares both)

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _setns = _libc.setns
except (OSError, AttributeError):  # pragma: no cover - not glibc/Linux
    _setns = None


def classify(exc: BaseException | None) -> str:
    """connected | refused | timeout | unreachable <errno> for a connect's outcome (None: it connected)."""
    if exc is None:
        return "connected"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    return f"unreachable {getattr(exc, 'errno', None)}"


def bind_local(s: socket.socket, src_ip: str) -> bool:
    """Bind s to src_ip (any port); False when that address is not local to this namespace."""
    try:
        s.bind((src_ip, 0))
    except OSError as exc:
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
            return False
        raise
    return True


def connect_once(src_ip: str, ip: str, port: int, timeout_s: float) -> str | None:
    """Bind to src_ip, connect to ip:port within timeout_s, classify; None when src_ip is not local here."""
    with socket.socket() as s:
        if not bind_local(s, src_ip):
            return None
        s.settimeout(timeout_s)
        try:
            s.connect((ip, port))
        except OSError as exc:
            return classify(exc)
        return classify(None)


def container_pid(stack: Any, service: str) -> int | None:
    """The host PID of a service's container (its network namespace's owner); None when unknown."""
    getter = getattr(stack, "container", None)
    if not callable(getter):
        return None
    try:
        pid = int(getter(service).attrs["State"]["Pid"])
    except Exception:  # noqa: BLE001 - no such container, or a backend without host PIDs
        return None
    return pid if pid > 0 else None


def in_netns(pid: int, fn: Callable[[], Any], timeout_s: float) -> Any:
    """fn() run in a thread that entered process `pid`'s network namespace; None when it cannot be entered
    (or fn returned None, or it did not finish within timeout_s + JOIN_SLACK_S)."""
    if not enabled or _setns is None:
        return None
    out: dict[str, Any] = {}

    def enter_and_run() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        except OSError:
            return
        try:
            try:
                target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            except OSError:
                return
            try:
                if _setns(target, CLONE_NEWNET) != 0:
                    return                        # EPERM without CAP_SYS_ADMIN: fall back to docker exec
                try:
                    out["result"] = fn()
                finally:
                    if _setns(own, CLONE_NEWNET) != 0:
                        out["stranded"] = True    # harmless: this thread ends right here
            finally:
                os.close(target)
        except OSError:
            out["result"] = None
        finally:
            os.close(own)

    thread = threading.Thread(target=enter_and_run, name=f"netns-{pid}", daemon=True)   # setns is per thread
    thread.start()
    thread.join(timeout_s + JOIN_SLACK_S)
    return None if thread.is_alive() else out.get("result")


def connect_from(pid: int, src_ip: str, ip: str, port: int, timeout_s: float) -> str | None:
    """Result of a TCP connect src_ip -> ip:port made in process `pid`'s network namespace; None when that
    namespace cannot be entered or src_ip is not one of its addresses."""
    if not src_ip:
        return None
    return in_netns(pid, lambda: connect_once(src_ip, ip, port, timeout_s), timeout_s)


def burst(src_ip: str, ip: str, port: int, count: int, wait_s: float) -> int | None:
    """`count` non-blocking connects src_ip -> ip:port at once, waited for wait_s, closed; returns how many
    started (None when src_ip is not local here). The in-process twin of TRAFFIC_CODE."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            socks.append(s)
            if not bind_local(s, src_ip):
                return None
            s.setblocking(False)
            s.connect_ex((ip, port))
        pending, end = list(socks), time.monotonic() + wait_s
        while pending and (left := end - time.monotonic()) > 0:
            done = select.select([], pending, [], left)[1]
            pending = [s for s in pending if s not in done]
        return len(socks)
    finally:
        for s in socks:
            s.close()


def burst_from(pid: int, src_ip: str, ip: str, port: int, count: int, wait_s: float) -> int | None:
    """burst() made in process `pid`'s network namespace; None when it cannot be (fall back to TRAFFIC_CODE)."""
    if not src_ip:
        return None
    return in_netns(pid, lambda: burst(src_ip, ip, port, count, wait_s), wait_s)


def probe(stack: Any, src: str, ip: str, port: int, timeout_s: float, src_ip: str | None = None) -> dict:
    """A TCP connect from `src`'s network namespace (bound to src_ip; by docker exec where the harness
    cannot enter it) to ip:port: result connected|refused|timeout|unreachable|error, and how ("via")."""
    pid = container_pid(stack, src) if src_ip and enabled else None
    found = connect_from(pid, src_ip, ip, port, timeout_s) if pid else None
    if found is not None:
        return {"from": src, "ip": ip, "port": port, "result": found.split()[0], "via": "netns"}
    from harness.nemesis.protocol import run   # late: the protocol module imports the kinds, which import this
    rc, out = run(stack, src, ["python3", "-I", "-S", "-c", PROBE_CODE, ip, str(port), str(timeout_s)])
    words = out.split()
    result = words[0] if rc == 0 and words and words[0] in ("connected", "refused", *BLOCKED) else "error"
    return {"from": src, "ip": ip, "port": port, "result": result, "via": "exec",
            **({"output": out[-300:]} if result == "error" else {})}


def probe_all(stack: Any, probes: list[tuple[str, str, int, str | None]], timeout_s: float) -> list[dict]:
    """Run (src, ip, port, src_ip) probes in parallel."""
    if len(probes) <= 1:
        return [probe(stack, *p[:3], timeout_s, *p[3:]) for p in probes]
    with futures.ThreadPoolExecutor(len(probes)) as pool:
        return list(pool.map(lambda p: probe(stack, *p[:3], timeout_s, *p[3:]), probes))
