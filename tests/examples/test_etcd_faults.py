"""A real three-member etcd cluster (examples/etcd/) under the kit's faults, driven only through the kit
(ComposeStack, the nemesis REGISTRY kinds, check_register) and the example's adapter: a partitioned leader is
replaced and steps down; linearizable reads stay linearizable across that partition; serializable reads on
the cut-off leader are caught stale (a selftest: the checker must find the bug); a killed follower restarts
and catches up. One cluster for the module, always taken down, nothing labelled with the run left behind.

The partition kind asks the stack's own topology (x-apiary of the etcd file), not Apiary's: its probe must dial
raft's port 2380 (asserted; before the fix it dialled 8001, the default file's worker port)."""
from __future__ import annotations

import concurrent.futures as futures
import contextlib
import os
import secrets
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.examples.etcd_image import build_etcd_image
import yaml

from examples.etcd.adapter import EtcdClient, EtcdError, RegisterWorkload
from harness.checkers.linearizable import check_register
from harness.errors import EnvironmentSetupError
from harness.history import History
from harness.nemesis.protocol import REGISTRY
from harness.stack.compose import ComposeStack
from harness.sweep import leftovers
from harness.wait import scaled, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "etcd"
COMPOSE_FILE = EXAMPLE / "docker-compose.yml"
CLIENT_PORT = 2379
SEED = int(os.environ.get("APIARY_SEED") or 13)
# A new leader within 2T + slack of a cut: a follower campaigns after raft's randomized election timeout in
# [T, 2T) without a heartbeat; the slack covers a split vote's extra round and polling on a loaded machine
# (measured here: 0.93-1.72 s over 10 cuts with T = 1 s, once 2.81 s; an integration run shared the 2-core host).
ELECTION_SLACK_S = 2.0
STEP_DOWN_TIMEOUTS = 2   # the cut-off leader steps down within about T (etcd's check-quorum); 2T + slack bounds it


def log(line: str) -> None:
    """One figure line for the report (shown with -s)."""
    print(f"\n[etcd-faults] {line}", flush=True)


def election_timeout_s() -> float:
    """etcd's election timeout as the compose file sets it (x-etcd-env.ETCD_ELECTION_TIMEOUT, in ms)."""
    return int(yaml.safe_load(COMPOSE_FILE.read_text())["x-etcd-env"]["ETCD_ELECTION_TIMEOUT"]) / 1000


def url(stack: ComposeStack, service: str) -> str:
    """A member's client URL on the host (its published port; re-read after the container restarts)."""
    return f"http://127.0.0.1:{stack.host_port(service, CLIENT_PORT)}"


def client(stack: ComposeStack, service: str, timeout_s: float = 1.0) -> EtcdClient:
    return EtcdClient(url(stack, service), timeout_s=timeout_s)


def views(cluster: SimpleNamespace, services: list[str]) -> dict[str, str]:
    """service -> the leader it names ("none": it knows of no leader)."""
    return {s: cluster.ids.get(client(cluster.stack, s).status()["leader"], "none") for s in services}


def agreed_leader(cluster: SimpleNamespace, services: list[str], not_: str | None = None) -> str:
    """The one leader all `services` name (other than `not_`); raises naming each member's view otherwise."""
    seen = views(cluster, services)
    names = set(seen.values())
    if len(names) != 1 or "none" in names or not_ in names:
        raise RuntimeError(f"no single leader{f' other than {not_}' if not_ else ''}: {seen}")
    return names.pop()


def settled(cluster: SimpleNamespace, timeout_s: float = 30) -> str:
    """Wait until every member answers its health check and all name one leader; returns the leader."""
    stack = cluster.stack

    def whole() -> str:
        dead, down = stack.probe_health()
        sick = [s for s in stack.services if not client(stack, s).healthy()]
        if dead or down or sick:
            raise RuntimeError(f"exited {dead}, not answering {down}, /health not true {sick}")
        return agreed_leader(cluster, stack.services)
    return wait_until(whole, timeout_s, err_msg="all three etcd members healthy, naming one leader")


@contextlib.contextmanager
def fault(stack: ComposeStack, kind: str, target: str, **params):
    """A registry kind applied for the block; healed after it whatever happens (the stack's own heal too
    if the fault's heal left something, so the next test starts whole; the tests assert heal() == [])."""
    active = REGISTRY[kind].apply(stack, target, **params)
    try:
        yield active
    finally:
        if active.heal():
            stack.heal()


def recorded_put(history: History, member: EtcdClient, key: str, value: str, process: int) -> None:
    """One write recorded as the workload records its writes (it must succeed)."""
    op = history.invoke(process, "write", value, key=key, node=member.base_url)
    member.put(key, value)
    history.complete(op, "ok", value, key=key, node=member.base_url)


def completions(ops: list[dict], node: str | None = None, after: float = 0.0, type_: str = "ok",
                f: str | None = None) -> list[dict]:
    """Completed register ops (of one member, one type and f, completed after a history time)."""
    return [op for op in ops if op["type"] == type_ and op.get("f") in ("read", "write", "cas")
            and (node is None or op.get("node") == node) and op["time"] > after and (f is None or op["f"] == f)]


@pytest.fixture(scope="module")
def etcd():
    """The etcd example up through ComposeStack with a unique run id; down() and a leftover check always."""
    image = build_etcd_image()
    run_id = f"etcdf-{secrets.token_hex(3)}"
    try:
        stack = ComposeStack(run_id, COMPOSE_FILE)
    except EnvironmentSetupError as exc:
        pytest.skip(f"the kit cannot reach Docker or compose: {exc}")
    started = time.monotonic()
    try:
        up_s = stack.up(timeout_s=90)
        ids = {m["id"]: m["name"] for m in client(stack, stack.services[0], 2.0).members()}
        assert sorted(ids.values()) == sorted(stack.services), ids
        cluster = SimpleNamespace(stack=stack, ids=ids, run_id=run_id, election_s=election_timeout_s())
        leader = wait_until(lambda: agreed_leader(cluster, stack.services), 20,
                            err_msg="one leader all three members name")
        log(f"{image} up as {stack.project} in {up_s:.1f} s, leader {leader} after "
            f"{time.monotonic() - started:.1f} s; members {sorted(ids.values())}")
        yield cluster
    finally:
        down_started = time.monotonic()
        failures = stack.down()
        left = leftovers(stack.client, run_id)
        log(f"down in {time.monotonic() - down_started:.1f} s; sweep failures {failures}; left {left}")
    assert failures == [], failures
    assert left == {"containers": [], "networks": [], "volumes": []}, left


def test_a_partitioned_leader_is_replaced_and_steps_down(etcd):
    stack = etcd.stack
    old = settled(etcd)
    others = [s for s in stack.services if s != old]
    bound = scaled(2 * etcd.election_s + ELECTION_SLACK_S)
    step_bound = scaled(STEP_DOWN_TIMEOUTS * etcd.election_s + ELECTION_SLACK_S)
    seen: dict[str, tuple[str, float]] = {}   # "elected" / "stepped": (whom, seconds after the cut began)
    before_cut = time.monotonic()

    def replaced_and_stepped_down() -> bool:
        """Poll both at once, so each is timed on its own: the majority's new leader, the old one's view."""
        since = time.monotonic() - before_cut
        if "elected" not in seen:
            with contextlib.suppress(RuntimeError, EtcdError):
                seen["elected"] = (agreed_leader(etcd, others, not_=old), since)
        if "stepped" not in seen:
            with contextlib.suppress(EtcdError):
                if (view := views(etcd, [old])[old]) != old:
                    seen["stepped"] = (view, since)
        return len(seen) == 2
    with fault(stack, "partition", f"{old}|*") as cut:
        applied = time.monotonic()
        proof = cut.verify()
        assert proof["held"], proof
        probes = proof["evidence"]["probes"]
        assert probes and {p["port"] for p in probes} == {stack.topology.listen_port(old)}, probes
        try:
            wait_until(replaced_and_stepped_down, max(bound, step_bound), 0.02, max_interval_s=0.05,
                       err_msg=f"{others} electing a leader other than the cut-off {old}, and {old} stepping down")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; observed {seen}") from None
        assert cut.heal() == []
    (new, elected_s), (old_sees, stepped_s) = seen["elected"], seen["stepped"]
    assert elected_s <= bound and stepped_s <= step_bound, (seen, bound, step_bound)
    aliases = stack.inspect(old)["networks"][stack.network_name("peer")]["aliases"]
    assert f"{old}-peer" in aliases, aliases   # raft's peer URL resolves again after the reconnect
    healed = time.monotonic()
    leader = settled(etcd)
    log(f"partition {old}|*: apply {applied - before_cut:.3f} s, verify {proof['evidence']['probes']}; new leader "
        f"{new} {elected_s:.3f} s after the cut began (bound {bound:.1f} s; election timeout {etcd.election_s:g} s); "
        f"{old} saw leader '{old_sees}' {stepped_s:.3f} s after it; healed, one leader ({leader}) and all "
        f"healthy {time.monotonic() - healed:.2f} s later")


def test_a_both_ways_cut_between_two_followers_cuts_only_their_link(etcd):
    """Members are peers of one rank, so partition f1|f2 (both ways) is a DROP each way between the two, not an
    isolation of f2: the leader still reaches both, so for 2T + slack all three name it, and a write through f1
    reads back through f2. Disconnecting f2 from raft's network (the cut before) leaves f2 with no leader."""
    stack = etcd.stack
    leader = settled(etcd)
    f1, f2 = [s for s in stack.services if s != leader]
    window = scaled(2 * etcd.election_s + ELECTION_SLACK_S)
    changed: dict[str, str] = {}
    with fault(stack, "partition", f"{f1}|{f2}") as cut:
        proof = cut.verify()
        assert proof["held"] is True, proof
        assert sorted(cut.applied["rules"]) == sorted([f1, f2]) and "cut" not in cut.applied, cut.applied
        began = time.monotonic()

        def window_over_or_leader_lost() -> bool:
            seen = views(etcd, stack.services)
            if set(seen.values()) != {leader}:
                changed.update(seen)
                return True
            return time.monotonic() - began >= window
        wait_until(window_over_or_leader_lost, window + scaled(10), 0.05,
                   err_msg=f"{window:.1f} s of watching every member's leader while {f1}|{f2} is cut")
        assert not changed, f"a member lost leader {leader} while only {f1}<->{f2} was cut: {changed}"
        value = f"pairwise-{secrets.token_hex(3)}"
        client(stack, f1, 3.0).put("pairwise", value)
        assert client(stack, f2, 3.0).get("pairwise") == value
        assert cut.heal() == []
    log(f"partition {f1}|{f2} (both, pairwise): rules on {sorted(cut.applied['rules'])}, probes "
        f"{[(p['from'], p['result']) for p in proof['evidence']['probes']]}; all three named {leader} for "
        f"{window:.1f} s; a write through {f1} read back through {f2}")


def test_linearizable_reads_stay_linearizable_across_a_leader_partition(etcd, tmp_path):
    stack = etcd.stack
    old = settled(etcd)
    others = [s for s in stack.services if s != old]
    urls = {s: url(stack, s) for s in stack.services}
    history = History()
    work = RegisterWorkload(list(urls.values()), history, keys=("lin0", "lin1", "lin2"), threads=6,
                            duration_s=5.0, max_ops=4000, seed=SEED)
    with futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(work.run)
        try:
            wait_until(lambda: len(completions(history.ops)) >= 30, 5, err_msg="30 ops done before the cut")
            history.record("nemesis", "invoke", "partition", f"{old}|*")
            with fault(stack, "partition", f"{old}|*") as cut:
                cut_at = history.record("nemesis", "info", "partition", f"{old}|*")["time"]   # cut by now
                assert cut.verify()["held"], cut.verify()
                new = wait_until(lambda: agreed_leader(etcd, others, not_=old),
                                 scaled(2 * etcd.election_s + ELECTION_SLACK_S), 0.02, max_interval_s=0.05,
                                 err_msg=f"{others} electing a new leader")
                elected_at = history.record("nemesis", "info", "new-leader", new)["time"]
                summary = running.result(timeout=work.duration_s + 2 * work.timeout_s + 5)
                history.record("nemesis", "info", "heal", f"{old}|*")
                assert cut.heal() == []
        finally:
            running.result(timeout=work.duration_s + 2 * work.timeout_s + 5)
    ops = history.ops
    (tmp_path / "history.jsonl").write_text(history.to_jsonl())
    majority_ok = {s: len(completions(ops, urls[s], elected_at)) for s in others}
    assert all(n > 0 for n in majority_ok.values()), majority_ok   # the majority served through the cut
    minority = {t: len(completions(ops, urls[old], cut_at, t)) for t in ("ok", "fail", "info")}
    verdict = check_register(ops, timeout_s=30)
    log(f"linearizable reads across {old}|*: workload {summary}; after the cut {old} {minority}, majority ok "
        f"{majority_ok} after {new} won; check_register valid={verdict['valid']} over {verdict['ops']} ops in "
        f"{verdict['seconds']} s (dropped {verdict['dropped']})")
    assert verdict["valid"] is True, {k: v for k, v in verdict.items() if k != "per_key"}


def test_selftest_serializable_reads_on_the_cut_off_leader_are_caught_stale(etcd, tmp_path):
    """@selftest: serializable reads answer from the member's own state, so the cut-off old leader serves
    the value it had at the cut while the majority writes new ones; the checker must call that stale."""
    stack = etcd.stack
    old = settled(etcd)
    others = [s for s in stack.services if s != old]
    old_url = url(stack, old)
    keys = ("ser0", "ser1")
    history = History()
    for k in keys:   # a value the old leader holds when it is cut
        recorded_put(history, client(stack, old, 2.0), k, f"before-cut-{k}", process=900)
    with fault(stack, "partition", f"{old}|*") as cut:
        assert cut.verify()["held"], cut.verify()
        new = wait_until(lambda: agreed_leader(etcd, others, not_=old),
                         scaled(2 * etcd.election_s + ELECTION_SLACK_S), 0.02, max_interval_s=0.05,
                         err_msg=f"{others} electing a new leader")
        for k in keys:   # done on the majority before any minority read begins: every such read is stale
            recorded_put(history, client(stack, new, 2.0), k, f"after-cut-{k}", process=901)
        writers = RegisterWorkload([url(stack, s) for s in others], history, keys=keys, threads=4, duration_s=2.5,
                                   max_ops=2000, seed=SEED)
        readers = RegisterWorkload([old_url], history, keys=keys, threads=2, duration_s=2.5, max_ops=2000,
                                   seed=SEED + 1, serializable=True, mix=(("read", 1.0),), first_process=100)
        with futures.ThreadPoolExecutor(2) as pool:
            summaries = [f.result() for f in [pool.submit(w.run) for w in (writers, readers)]]
        assert cut.heal() == []
    ops = history.ops
    (tmp_path / "history.jsonl").write_text(history.to_jsonl())
    minority_reads = completions(ops, old_url, f="read")
    stale_values = sum(op["value"] == f"before-cut-{op['key']}" for op in minority_reads)
    majority_writes = len(completions(ops, f="write")) - len(keys) * 2
    assert minority_reads, summaries[1]
    verdict = check_register(ops, timeout_s=30)
    stale = [a for a in verdict["anomalies"] if a["kind"] == "stale-read"]
    by_index = {op["index"]: op for op in ops}
    named = [(a["key"], a["op"]["process"], a["op"]["invoke_index"], a["value_read"], a["linearizable_values"])
             for a in stale]
    log(f"serializable reads on the cut-off {old}: {len(minority_reads)} ok reads, {stale_values} returned the "
        f"pre-cut value; majority {summaries[0]} ({majority_writes} workload writes ok); check_register "
        f"valid={verdict['valid']} in {verdict['seconds']} s, stale reads named (key, process, invoke_index, read, "
        f"could have read): {named}")
    assert verdict["valid"] is False, {k: v for k, v in verdict.items() if k != "per_key"}
    assert stale, verdict["anomalies"]
    for a in stale:
        assert by_index[a["op"]["invoke_index"]]["node"] == old_url, a
        assert a["value_read"] == f"before-cut-{a['key']}" and a["value_read"] not in a["linearizable_values"], a
        assert any(w["f"] in ("write", "cas") for w in a["window"]), a["window"]


def test_a_killed_follower_restarts_and_catches_up(etcd):
    stack = etcd.stack
    leader = settled(etcd)
    follower = next(s for s in stack.services if s != leader)
    key, token = "kill0", secrets.token_hex(3)
    client(stack, leader, 2.0).put(key, f"before-kill-{token}")
    wait_until(lambda: client(stack, follower).get(key, serializable=True) == f"before-kill-{token}", 5,
               err_msg=f"{follower} holding the value written before the kill")
    with fault(stack, "kill", follower) as dead:
        proof = dead.verify()
        assert proof["held"], proof
        writer = client(stack, leader, 2.0)
        latest = [f"after-kill-{token}-{i}" for i in range(20)]
        for value in latest:   # the two left are a majority: every write commits
            writer.put(key, value)
        restarted = time.monotonic()
        assert dead.heal() == []
    rejoined = client(stack, follower, 1.0)   # its published port was re-drawn on restart

    def caught_up() -> bool:
        try:
            return rejoined.get(key, serializable=True) == latest[-1]
        except EtcdError:
            return False   # still starting
    wait_until(caught_up, 20, err_msg=f"restarted {follower} serving {latest[-1]!r} from its own state")
    caught_s = time.monotonic() - restarted
    after = settled(etcd)
    log(f"kill {follower} (follower of {leader}): verify {proof['evidence']}; {len(latest)} writes on the majority; "
        f"restarted, its serializable read returned the latest value {caught_s:.2f} s after heal(); leader {after}")


def test_the_declared_reset_heals_and_empties_the_keyspace_on_every_member(etcd):
    """ComposeStack.reset(): a paused member is unpaused, all are healthy, and the compose file's
    x-apiary.reset (a deleterange of every key) left no key on any member, read linearizably."""
    stack = etcd.stack
    settled(etcd)
    for i, member in enumerate(stack.services):
        client(stack, member).put(f"left-{i}", f"v{i}")
    stack.pause("etcd3")
    took = stack.reset()
    assert stack.inspect("etcd3").get("paused") is False, stack.inspect("etcd3")
    settled(etcd)
    left = {(m, f"left-{i}"): client(stack, m).get(f"left-{i}") for m in stack.services for i in range(3)}
    assert all(v is None for v in left.values()), f"keys left after a {took:.2f} s reset: {left}"
