"""The etcd adapter's steps: who leads, elections and step-downs timed from the newest fault, the register
workload (linearizable or serializable reads) recorded into the world's history, writes on the majority and
a member catching up. Everything else is the kit's generic library (kit_steps.py). World vars set here:
{members}, {leader}, {others}, {follower} (comma-joined names), {new_leader}."""
from __future__ import annotations

import concurrent.futures as futures
import contextlib
import time

from behave import step

from examples.etcd.adapter import EtcdClient, EtcdError, RegisterWorkload
from harness.wait import scaled, wait_until

CLIENT_PORT = 2379
SEED = 13


def client(world, service: str, timeout_s: float = 1.0) -> EtcdClient:
    """A member's client over its published port (re-read after a restart re-draws it)."""
    return EtcdClient(f"http://127.0.0.1:{world.stack.host_port(service, CLIENT_PORT)}", timeout_s=timeout_s)


def names(world, text: str) -> list[str]:
    """Member names from a step argument ("etcd1, etcd2" or "{others}")."""
    found = [n.strip() for n in world.resolve(text).split(",") if n.strip()]
    unknown = sorted(set(found) - set(world.stack.services))
    assert found and not unknown, f"{text!r} names no member or unknown ones {unknown}; members {world.stack.services}"
    return found


def views(world, services: list[str]) -> dict[str, str]:
    """service -> the leader it names ("none": it knows of no leader)."""
    if "_ids" not in world.vars:
        world.vars["_ids"] = {m["id"]: m["name"] for m in client(world, world.stack.services[0], 2.0).members()}
    return {s: world.vars["_ids"].get(client(world, s).status()["leader"], "none") for s in services}


def agreed_leader(world, services: list[str], not_: str | None = None) -> str:
    """The one leader all `services` name (other than `not_`); RuntimeError with each member's view otherwise."""
    seen = views(world, services)
    found = set(seen.values())
    if len(found) != 1 or "none" in found or not_ in found:
        raise RuntimeError(f"no single leader{f' other than {not_}' if not_ else ''}: {seen}")
    return found.pop()


def since_fault(world, seconds: float) -> float:
    """What is left of a (scaled) bound counted from the newest fault's apply; AssertionError without one."""
    assert world.applied_at is not None, "no fault was applied: nothing to time from"
    return scaled(seconds) - (time.monotonic() - world.applied_at)


@step("the etcd members agree on one leader within {seconds:g} seconds")
def one_leader(context, seconds):
    """Given the etcd members agree on one leader within 20 seconds"""
    w = context.world
    members = list(w.stack.services)
    leader = wait_until(lambda: agreed_leader(w, members), seconds, err_msg=f"one leader all of {members} name")
    others = [s for s in members if s != leader]
    w.vars.update(members=",".join(members), leader=leader, others=",".join(others), follower=others[0])


@step("a new leader is elected among the others within {seconds:g} seconds")
def new_leader(context, seconds):
    """When a new leader is elected among the others within 4 seconds"""
    w = context.world
    old, others = w.vars["leader"], names(w, "{others}")
    new = wait_until(lambda: agreed_leader(w, others, not_=old), max(0.0, since_fault(w, seconds)), 0.02,
                     max_interval_s=0.05, scale=False,
                     err_msg=f"{others} electing a leader other than the cut-off {old}, {seconds:g} s after the fault")
    w.vars["new_leader"] = new
    w.history.record("nemesis", "info", "new-leader", new, after_s=round(time.monotonic() - w.applied_at, 3))


@step("the old leader steps down within {seconds:g} seconds")
def old_leader_steps_down(context, seconds):
    """Then the old leader steps down within 4 seconds"""
    w = context.world
    old = w.vars["leader"]

    def stepped_down() -> str | None:
        with contextlib.suppress(EtcdError):
            view = views(w, [old])[old]
            return view if view != old else None
        return None
    view = wait_until(stepped_down, max(0.0, since_fault(w, seconds)), 0.02, max_interval_s=0.05, scale=False,
                      err_msg=f"{old} no longer naming itself leader, {seconds:g} s after the fault")
    w.history.record("nemesis", "info", "stepped-down", old, sees=view,
                     after_s=round(time.monotonic() - w.applied_at, 3))


@step('the register keys are "{keys}"')
def register_keys(context, keys):
    """Given the register keys are "ser0, ser1" """
    context.world.vars["keys"] = [k.strip() for k in keys.split(",") if k.strip()]


def workload(context, n: int, members: str, seconds: float, mode: str, rate: float | None = None) -> RegisterWorkload:
    """A RegisterWorkload over the members, recording into the world's history (its own process ids); paced
    to `rate` ops a second when given (then its op budget is what that rate makes over its length)."""
    w = context.world
    modes = {"linearizable": (False, None), "serializable": (True, None), "only serializable": (True, (("read", 1.0),))}
    assert mode in modes, f"reads must be one of {sorted(modes)}, not {mode!r}"
    serializable, mix = modes[mode]
    runs = w.vars.setdefault("_workloads", [])
    extra = {"mix": mix} if mix else {}
    max_ops = 4000 if rate is None else int(rate * seconds) + n
    return RegisterWorkload([client(w, s).base_url for s in names(w, members)], w.history,
                            keys=w.vars.get("keys", ("r0", "r1", "r2")), threads=n, duration_s=seconds,
                            max_ops=max_ops, seed=SEED + len(runs), serializable=serializable,
                            first_process=1000 * (len(runs) + 1), rate_per_s=rate, **extra)


@step('{n:d} clients start the register workload on "{members}" for {seconds:g} seconds with {mode} reads')
def start_workload(context, n, members, seconds, mode, rate=None):
    """When 6 clients start the register workload on "{members}" for 6 seconds with linearizable reads"""
    work = workload(context, n, members, seconds, mode, rate)
    pool = futures.ThreadPoolExecutor(1, thread_name_prefix="etcd-workload")
    context.world.vars["_workloads"].append((work, pool.submit(work.run)))
    pool.shutdown(wait=False)


@step('{n:d} clients start the register workload on "{members}" for {seconds:g} seconds with {mode} reads at '
      '{rate:g} ops a second')
def start_paced_workload(context, n, members, seconds, mode, rate):
    """When 5 clients start the register workload on "{members}" for 37 s with linearizable reads at 100 ops a second"""
    start_workload(context, n, members, seconds, mode, rate)


@step("every register workload has finished within {seconds:g} seconds")
def workloads_finished(context, seconds):
    """When every register workload has finished within 15 seconds"""
    runs = context.world.vars.get("_workloads", [])
    assert runs, "no register workload was started"
    deadline = time.monotonic() + scaled(seconds)
    for work, running in runs:
        try:
            work.summary = running.result(timeout=max(0.0, deadline - time.monotonic()))
        except futures.TimeoutError:
            raise AssertionError(f"a register workload still ran {seconds:g} s later") from None
    done = [work.summary for work, _ in runs]
    assert all(s["ok"] > 0 for s in done), f"a workload completed no op: {done}"
    context.world.vars["workload_summaries"] = done


@step('{n:d} clients run the register workload on "{members}" for {seconds:g} seconds with {mode} reads')
def run_workload_on(context, n, members, seconds, mode):
    """When 2 clients run the register workload on "{leader}" for 2.5 seconds with only serializable reads"""
    start_workload(context, n, members, seconds, mode)
    work = context.world.vars["_workloads"][-1][0]
    workloads_finished(context, seconds + 2 * work.timeout_s + 5)


@step("{n:d} clients run the register workload for {seconds:g} seconds with {mode} reads")
def run_workload(context, n, seconds, mode):
    """When 6 clients run the register workload for 5 seconds with linearizable reads"""
    run_workload_on(context, n, "{members}", seconds, mode)


@step("the register workload has completed {n:d} ops within {seconds:g} seconds")
def workload_progressed(context, n, seconds):
    """When the register workload has completed 30 ops within 5 seconds"""
    history = context.world.history
    wait_until(lambda: sum(op["type"] == "ok" and op["f"] in ("read", "write", "cas") for op in history.ops) >= n,
               seconds, err_msg=f"{n} register ops completed ok")


def recorded_put(world, service: str, key: str, value: str) -> None:
    """One write on a member, recorded as the workload records its writes; it must succeed."""
    member = client(world, service, 2.0)
    op = world.history.invoke(900, "write", value, key=key, node=member.base_url)
    try:
        member.put(key, value)
    except EtcdError as exc:
        world.history.complete(op, "info", value, key=key, node=member.base_url, error=str(exc))
        raise AssertionError(f"the write {key}={value} on {service} failed: {exc}") from None
    world.history.complete(op, "ok", value, key=key, node=member.base_url)
    world.vars.setdefault("latest", {})[key] = value


@step('the value "{value}" is written to every register key on "{member}"')
def write_every_key(context, value, member):
    """When the value "before-cut" is written to every register key on "{leader}" """
    w = context.world
    (service,) = names(w, member)
    for key in w.vars.get("keys", ("r0", "r1", "r2")):
        recorded_put(w, service, key, f"{value}-{key}")


@step('{n:d} values are written to "{key}" on the majority')
def write_on_majority(context, n, key):
    """When 20 values are written to "kill0" on the majority"""
    w = context.world
    for i in range(n):   # through the leader: with one member down, the two left are a majority
        recorded_put(w, w.vars["leader"], key, f"majority-{key}-{i}")


@step('"{member}" serves the latest value of "{key}" within {seconds:g} seconds')
def member_caught_up(context, member, key, seconds):
    """Then "{follower}" serves the latest value of "kill0" within 20 seconds"""
    w = context.world
    (service,) = names(w, member)
    latest = w.vars.get("latest", {}).get(key)
    assert latest is not None, f"no step wrote {key!r}"

    def caught_up() -> bool:
        try:
            return client(w, service).get(key, serializable=True) == latest
        except EtcdError:
            return False   # still starting (its published port is re-read on every try)
    wait_until(caught_up, seconds, err_msg=f"{service} serving {latest!r} for {key!r} from its own state",
               swallow=(EtcdError, Exception))
