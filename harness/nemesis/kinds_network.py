"""Network fault kinds: `partition` (docker network disconnect both ways; iptables DROP one way) and `loss`
(random inbound TCP drops). Every iptables rule lives in the one chain APIARY_NEMESIS, tagged with a
comment so overlapping faults in one container add and remove only their own rules.

A partition's verify() makes a short TCP connect from one side to the other, which must time out or be
unreachable (connected or refused both mean packets flow). The harness makes it from inside the prober
container's network namespace, bound to the prober's own address (harness/nemesis/probes.py: about 1 ms),
and falls back to `docker exec` of PROBE_CODE in the prober where it cannot. The connect timeout
(probe_timeout_s, 25 ms) is far above a docker bridge's round trip (well under 1 ms), and the TCP
handshake is the kernel's, so a busy peer process still answers in time: a timeout means the packets
did not cross.
A loss's verify() makes a burst of TCP connects from the target to its peer (their SYN-ACKs come back
through the lossy INPUT), from the target's namespace like the probe (by exec of TRAFFIC_CODE where it
cannot), then reads its rules' packet counters by exec, requiring drops.
"""
from __future__ import annotations

import concurrent.futures as futures
import itertools
import os
import shlex
import time
from typing import Any

from harness.errors import NemesisError
from harness.nemesis.protocol import (CHAIN, DOWN, ActiveFault, FaultKind, check_number, is_docker,
                                      listen_port, live_networks, net_admin, parse_target, peers, poll, rank, register,
                                      run, services_of, static_networks)
from harness.nemesis.probes import (BLOCKED, PROBE_CODE, TRAFFIC_CODE, TRAFFIC_CONNECTS, TRAFFIC_WAIT_S,  # noqa: F401
                                    burst_from, container_pid, probe, probe_all)
from harness.stack import topology_of

_tags = itertools.count(1)


def new_tag() -> str:
    """A rule comment unique to this process and fault."""
    return f"apiary-{os.getpid()}-{next(_tags)}"


def add_rules_script(specs: list[str]) -> list[str]:
    """sh -c argv: make sure the chain exists and is jumped to from INPUT and OUTPUT, then append the rules."""
    lines = ["set -e", f"iptables -w -N {CHAIN} 2>/dev/null || true"]
    for hook in ("INPUT", "OUTPUT"):
        lines.append(f"iptables -w -C {hook} -j {CHAIN} 2>/dev/null || iptables -w -I {hook} 1 -j {CHAIN}")
    lines += [f"iptables -w -A {CHAIN} {spec}" for spec in specs]
    return ["sh", "-c", "\n".join(lines)]


def remove_rules_script(specs: list[str]) -> list[str]:
    """sh -c argv: delete every copy of the rules; exits 0 only when none is left."""
    lines = [f"while iptables -w -D {CHAIN} {spec} 2>/dev/null; do :; done" for spec in specs]
    lines.append(" && ".join(f"! iptables -w -C {CHAIN} {spec} 2>/dev/null" for spec in specs))
    return ["sh", "-c", "\n".join(lines)]


LIST_RULES = ["iptables", "-w", "-L", CHAIN, "-v", "-n", "-x"]


def counters(listing: str) -> dict[str, int]:
    """Rule comment -> packet counter, from `iptables -L CHAIN -v -n -x` output."""
    out = {}
    for line in listing.splitlines():
        if "/* " in line and line.split() and line.split()[0].isdigit():
            out[line.split("/* ", 1)[1].split(" */", 1)[0]] = int(line.split()[0])
    return out


def networks_of(stack: Any, services: list[str]) -> dict[str, dict[str, dict]]:
    """service -> its live attachments (live_networks), inspected in parallel."""
    unique = list(dict.fromkeys(services))
    with futures.ThreadPoolExecutor(len(unique)) as pool:
        return dict(zip(unique, pool.map(lambda s: live_networks(stack, s), unique)))


def ip_on(nets: dict[str, dict], net: str, service: str) -> str:
    ip = (nets.get(net) or {}).get("ip")
    if not ip:
        raise NemesisError(f"no IP for {service} on {net} (networks: {sorted(nets)})")
    return ip


def shared(na: dict[str, dict], nb: dict[str, dict], stack: Any = None) -> list[str]:
    """Non host-facing networks both live attachment maps contain."""
    cuttable = topology_of(stack).cuttable
    return [n for n in na if n in nb and n in cuttable]


def normalize_direction(direction: Any, a: str, b: str | None) -> str:
    """both | a->b | b->a (also accepted: "<a>-><b>" spelled with the target's service names)."""
    if direction in ("both", "a->b", "b->a"):
        return direction
    if direction == f"{a}->{b}":
        return "a->b"
    if direction == f"{b}->{a}":
        return "b->a"
    raise NemesisError(f"partition: bad param 'direction' {direction!r}; want 'both', 'a->b' or 'b->a'")


class PartitionCut(ActiveFault):
    """Services disconnected from networks; verify: membership gone and connect probes blocked."""

    def __init__(self, kind: str, target: str, params: dict, stack: Any, cuts: list, probes: list):
        super().__init__(kind, target, params, stack)
        self.cuts = cuts        # [(service, short network)]
        self.probes = probes    # [(prober, its IP, cut service, network, the cut's IP there before the cut, port)]

    def check(self) -> tuple[bool, Any]:
        live = {s: live_networks(self.stack, s) for s in {s for s, _ in self.cuts}}
        membership = {s: sorted(nets) for s, nets in live.items()}
        still = [[s, n] for s, n in self.cuts if n in live[s]]
        # probe the cut service's address now if it is back on the network (a reconnect may change it)
        now = [(prober, (live[cut].get(net) or {}).get("ip") or old_ip, port, prober_ip)
               for prober, prober_ip, cut, net, old_ip, port in self.probes]
        results = probe_all(self.stack, now, self.params["probe_timeout_s"])
        held = not still and bool(results) and all(r["result"] in BLOCKED for r in results)
        return held, {"cut": [list(c) for c in self.cuts], "still_attached": still, "membership": membership,
                      "probes": results}

    def undo(self) -> list[str]:
        left, failed = [], set()
        for service, net in self.cuts:
            try:
                self.stack.connect(service, net)
            except Exception as exc:  # noqa: BLE001 - reconnect the rest, report this one
                left.append(f"connect {service} {net}: {exc!r}"[:300])
                failed.add((service, net))
        for service, net in self.cuts:
            if (service, net) not in failed and net not in live_networks(self.stack, service):
                left.append(f"{service} still not on {net} after connect")
        return left


class RuleFault(ActiveFault):
    """iptables rules in one or more containers ({host: [spec]}); heal deletes exactly those rules."""

    def __init__(self, kind: str, target: str, params: dict, stack: Any, rules: dict[str, list[str]]):
        super().__init__(kind, target, params, stack)
        self.rules = rules

    def undo(self) -> list[str]:
        left = []
        for host, specs in self.rules.items():
            rc, out = run(self.stack, host, remove_rules_script(specs))
            if rc == 0:
                continue
            status = (self.stack.inspect(host) or {}).get("status")
            if status in (*DOWN, None):
                continue   # a stopped container's network namespace, and its rules, are gone
            left.append(f"iptables rules in {host} ({status}): {out.strip()[-200:]}")
        return left


class OneWayDrop(RuleFault):
    """Packets src -> dst dropped; verify: connect probes from src to dst blocked."""

    def __init__(self, kind, target, params, stack, rules, probes):
        super().__init__(kind, target, params, stack, rules)
        self.probes = probes

    def check(self) -> tuple[bool, Any]:
        results = probe_all(self.stack, self.probes, self.params["probe_timeout_s"])
        held = bool(results) and all(r["result"] in BLOCKED for r in results)
        return held, {"rules": self.rules, "probes": results}


def install(stack: Any, rules: dict[str, list[str]]) -> None:
    """Add rules per container; on a failure remove what was added and raise NemesisError."""
    done: dict[str, list[str]] = {}
    for host, specs in rules.items():
        rc, out = run(stack, host, add_rules_script(specs))
        if rc != 0:
            for h, s in done.items():
                run(stack, h, remove_rules_script(s))
            raise NemesisError(f"iptables in {host} exited {rc}: {out.strip()[-300:]}")
        done[host] = specs


@register
class Partition(FaultKind):
    """Cut two services apart (or one from all its peers): both ways by disconnect, one way by DROP."""

    name = "partition"
    defaults = {"direction": "both", "probe_timeout_s": 0.025}

    def validate(self, params: dict) -> None:
        check_number(self.name, params, "probe_timeout_s", 0.01, 5)

    def targets(self, stack: Any) -> list[str]:
        if not is_docker(stack):
            return []
        svcs = services_of(stack)
        pairs = [f"{x}|{y}" for x in svcs for y in peers(stack, x) if rank(x, stack) > rank(y, stack)]
        return pairs + [f"{s}|*" for s in svcs if peers(stack, s)]

    def claims(self, stack: Any, target: str, params: dict) -> list[tuple[str, str]]:
        a, b = parse_target(stack, target)
        others = peers(stack, a) if b == "*" else [b]
        if params.get("direction", "both") == "both" and not pairwise(a, b, stack):
            cut = [a] if b == "*" else [leaf(a, b, stack)]
            return [(s, "cut") for s in cut] + [(s, "probe") for s in {a, *others} - set(cut)]
        return [(s, "block") for s in {a, *others}]     # DROP rules that stop the link's traffic

    def apply(self, stack: Any, target: str, **params: Any) -> PartitionCut | OneWayDrop:
        p = self.check_params(params)
        if not is_docker(stack):
            raise NemesisError("partition needs the docker backend (container networks)")
        a, b = parse_target(stack, target)
        if b is None:
            raise NemesisError(f"partition: target {target!r} must be 'a|b' or 'a|*'")
        p["direction"] = normalize_direction(p["direction"], a, b)
        others = peers(stack, a) if b == "*" else [b]
        if b != "*" and not set(static_networks(a, stack)) & set(static_networks(b, stack)):
            raise NemesisError(f"partition: {a} and {b} share no network to cut")
        if not others:
            raise NemesisError(f"partition: {a} has no peers")
        nets = networks_of(stack, [a, *others])
        if p["direction"] == "both" and pairwise(a, b, stack):   # peers of one rank: cut this link only
            return self._drop(stack, target, p, [(a, b), (b, a)], nets)
        if p["direction"] == "both":
            return self._disconnect(stack, target, p, a, b, others, nets)
        pairs = [(a, o) for o in others] if p["direction"] == "a->b" else [(o, a) for o in others]
        return self._drop(stack, target, p, pairs, nets)

    def _disconnect(self, stack, target, p, a, b, others, nets) -> PartitionCut:
        if b == "*":
            cut = a
            cut_nets = [n for n in nets[a] if n in topology_of(stack).cuttable]
            probes = []
            for n in cut_nets:
                prober = next((o for o in others if n in nets[o]), None)
                if prober:
                    probes.append((prober, ip_on(nets[prober], n, prober), a, n, ip_on(nets[a], n, a), listen_port(a, stack)))
        else:
            cut = leaf(a, b, stack)
            other = a if cut == b else b
            cut_nets = shared(nets[a], nets[b], stack)
            probes = [(other, ip_on(nets[other], n, other), cut, n, ip_on(nets[cut], n, cut), listen_port(cut, stack))
                      for n in cut_nets]
        if not cut_nets:
            raise NemesisError(f"partition {target}: nothing to cut ({cut} shares no attached network)")
        done = []
        try:
            for n in cut_nets:
                stack.disconnect(cut, n)
                done.append((cut, n))
        except Exception as exc:
            for s, n in done:
                try:
                    stack.connect(s, n)
                except Exception:  # noqa: BLE001 - the apply error below is what matters
                    pass
            raise NemesisError(f"partition {target}: disconnect {cut} failed: {exc!r}") from exc
        fault = PartitionCut(self.name, target, p, stack, done, probes)
        fault.applied = {"cut": [list(c) for c in done]}
        return fault

    def _drop(self, stack, target, p, pairs, nets) -> OneWayDrop:
        rules: dict[str, list[str]] = {}
        probes = []
        for src, dst in pairs:
            common = shared(nets[src], nets[dst], stack)
            if not common:
                raise NemesisError(f"partition {target}: {src} and {dst} share no attached network")
            src_ip, dst_ip = ip_on(nets[src], common[0], src), ip_on(nets[dst], common[0], dst)
            tag = new_tag()
            if net_admin(stack, dst):
                rules.setdefault(dst, []).append(f"-s {src_ip} -m comment --comment {tag} -j DROP")
            elif net_admin(stack, src):
                rules.setdefault(src, []).append(f"-d {dst_ip} -m comment --comment {tag} -j DROP")
            else:
                raise NemesisError(f"partition {target}: neither {src} nor {dst} has NET_ADMIN for iptables")
            probes.append((src, dst_ip, listen_port(dst, stack), src_ip))
        install(stack, rules)
        fault = OneWayDrop(self.name, target, p, stack, rules, probes)
        fault.applied = {"rules": rules}
        return fault


def pairwise(a: str, b: str | None, stack: Any = None) -> bool:
    """A both-ways partition of a|b cuts just that link (an iptables DROP each way, Jepsen's pairwise cut) when
    the two are peers of one rank and either may change its rules: disconnecting one of them from the network
    would cut it off from every peer, not from the other alone. Other links disconnect the leaf (leaf())."""
    return b not in (None, "*") and rank(a, stack) == rank(b, stack) and (net_admin(stack, a) or net_admin(stack, b))


def leaf(a: str, b: str, stack: Any = None) -> str:
    """The side a two-service partition disconnects: the lower rank (worker < hive < orchestrator), b on a tie
    (a tie with no NET_ADMIN on either side; pairwise() cuts the others)."""
    return a if rank(a, stack) < rank(b, stack) else b


def read_script(traffic: tuple[str, int]) -> list[str]:
    """sh -c argv: a burst of connects to traffic (TRAFFIC_CODE), then the chain listing."""
    gen = shlex.join(["python3", "-I", "-S", "-c", TRAFFIC_CODE, traffic[0], str(traffic[1]), str(TRAFFIC_CONNECTS),
                      str(TRAFFIC_WAIT_S)])
    return ["sh", "-c", f"{gen} >/dev/null 2>&1; " + shlex.join(LIST_RULES)]


class PacketLoss(RuleFault):
    """A counting rule and a random DROP rule on inbound TCP; verify: the DROP counter shows drops."""

    def __init__(self, kind, target, params, stack, rules, tag, traffic, src_ip=None):
        super().__init__(kind, target, params, stack, rules)
        self.tag = tag
        self.traffic = traffic   # (ip, port) a burst of connects goes to, to make packets arrive
        self.src_ip = src_ip     # the target's own address toward it (the burst's source)

    def parse(self, rc: int | None, out: str) -> tuple[int | None, dict]:
        """(drop counter, evidence) of a read's output."""
        if rc != 0:
            return None, {"error": out.strip()[-300:]}
        c = counters(out)
        return c.get(self.tag), {"seen": c.get(f"{self.tag}-seen"), "dropped": c.get(self.tag)}

    def read(self, first: bool) -> tuple[int | None, dict]:
        """A burst of connects, then the counters. The burst comes from the target's namespace (about free),
        else by exec of TRAFFIC_CODE, which the first read skips (the stack's own traffic may do)."""
        pid = container_pid(self.stack, self.target) if self.src_ip else None
        sent = burst_from(pid, self.src_ip, *self.traffic, TRAFFIC_CONNECTS, TRAFFIC_WAIT_S) if pid else None
        via = "netns" if sent else None if first else "exec"
        dropped, ev = self.parse(*run(self.stack, self.target, read_script(self.traffic) if via == "exec" else LIST_RULES))
        return dropped, {**ev, "traffic_via": via}

    def check(self) -> tuple[bool, Any]:
        rounds = {"n": 0}

        def once() -> tuple[bool, Any]:
            dropped, ev = self.read(first=rounds["n"] == 0)
            rounds["n"] += 1
            return bool(dropped), ev
        held, ev = poll(once, self.params["verify_timeout_s"])
        return held, {**ev, "rules": self.rules, "reads": rounds["n"]}


@register
class Loss(FaultKind):
    """Drop `percent` % of a service's inbound TCP packets (from `peer` only, if given)."""

    name = "loss"
    defaults = {"percent": 50, "peer": None, "verify_timeout_s": 3.0}

    def validate(self, params: dict) -> None:
        check_number(self.name, params, "percent", 1, 100)
        check_number(self.name, params, "verify_timeout_s", 0, 30)

    def targets(self, stack: Any) -> list[str]:
        return [s for s in services_of(stack) if net_admin(stack, s)] if is_docker(stack) else []

    def claims(self, stack: Any, target: str, params: dict) -> list[tuple[str, str]]:
        """Its rule, and the traffic that proves the drops, at both ends: a killed or paused peer leaves no
        address to send from (a short soak's loss failed to apply while its hive was being killed), a one-way
        partition on the link lets nothing arrive to count."""
        toward = params.get("peer") or next(iter(peers(stack, target)), None)
        return [(target, "rule"), (target, "traffic")] + ([(toward, "traffic")] if toward else [])

    def apply(self, stack: Any, target: str, **params: Any) -> PacketLoss:
        p = self.check_params(params)
        self.check_target(stack, target)
        peer = p["peer"]
        if peer is not None and peer not in peers(stack, target):
            raise NemesisError(f"loss: bad param 'peer' {peer!r}; want one of {', '.join(peers(stack, target))}")
        toward = peer or next(iter(peers(stack, target)), None)
        if toward is None:
            raise NemesisError(f"loss: {target} has no peer to measure traffic with")
        nets = networks_of(stack, [target, toward])
        mine, theirs = nets[target], nets[toward]
        common = shared(mine, theirs, stack)
        if not common:
            raise NemesisError(f"loss: {target} and {toward} share no attached network")
        src = f"-s {ip_on(theirs, common[0], toward)} " if peer else ""
        tag = new_tag()
        match = f"-i eth+ -p tcp {src}"
        specs = [f"{match}-m comment --comment {tag}-seen",
                 f"{match}-m statistic --mode random --probability {p['percent'] / 100:.4f} -m comment --comment {tag} -j DROP"]
        rules = {target: specs}
        traffic = (ip_on(theirs, common[0], toward), listen_port(toward, stack))
        install(stack, rules)
        fault = PacketLoss(self.name, target, p, stack, rules, tag, traffic, ip_on(mine, common[0], target))
        fault.applied = {"rules": rules, "traffic_peer": toward, "at": time.time()}
        return fault
