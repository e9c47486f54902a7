"""Observations that make the suite's weakest Thens able to fail: streams spread over time, subscriber
windows fixed by the scenario (not by the subscriber), cross-tenant reads, presented wrong keys in logs,
the recorded stress p99, dropped packets, and how background completions ended.

Pure functions return a list of problems (empty = the observation holds) or a checker-shaped dict;
the few helpers that act on a World or a client say so in their docstring.
"""
from __future__ import annotations

import json
import secrets
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

from apiary_suite.checker import annotate_workers
from harness.history import as_ops, completions
from apiary_suite.load import percentile, write_metrics
from apiary_suite.world import setting


# ---- streams ------------------------------------------------------------------------------------------
def stream_problems(chunks: list[str], token_times: list[float], tokens: list[str], min_chunks: int,
                    min_spread_s: float) -> list[str]:
    """Chunks are whole consecutive tokens in order covering every token, at least `min_chunks` of them,
    and the first arrived at least `min_spread_s` before the last (a buffered stream arrives at once)."""
    problems, i = [], 0
    for k, chunk in enumerate(chunks):
        got = ""
        while i < len(tokens) and len(got) < len(chunk) and chunk.startswith(got + tokens[i]):
            got += tokens[i]
            i += 1
        if got != chunk:
            problems.append(f"chunk {k} {chunk!r} is not the next whole token(s) (token {i} is "
                            f"{tokens[i] if i < len(tokens) else None!r})")
            break
    if not problems and i != len(tokens):
        problems.append(f"the chunks carried {i} of {len(tokens)} tokens")
    if len(chunks) < min_chunks:
        problems.append(f"{len(chunks)} chunks, fewer than {min_chunks}")
    if len(token_times) != len(chunks) or not token_times:
        problems.append(f"{len(token_times)} arrival times for {len(chunks)} chunks")
    elif token_times[-1] - token_times[0] < min_spread_s:
        problems.append(f"first chunk at {token_times[0]:.3f}s, last at {token_times[-1]:.3f}s: spread "
                        f"{token_times[-1] - token_times[0]:.3f}s < {min_spread_s}s (buffered, not streamed)")
    return problems


# ---- event subscribers ----------------------------------------------------------------------------------
def next_seq(subscribers: Iterable[Any]) -> int:
    """1 + the highest event seq any of the subscribers has seen (0 when none saw an event)."""
    seqs = [e["seq"] for s in subscribers for e in s.events if isinstance(e.get("seq"), int)]
    return max(seqs) + 1 if seqs else 0


def window_problems(mine: list[int], published: Iterable[int], low: int) -> list[str]:
    """`mine` (a subscriber's seqs, arrival order) holds exactly the published seqs >= low, once each, in
    order; the window's ends come from `low` and the published set, never from the subscriber."""
    expected = sorted({q for q in published if q >= low})
    if not expected:
        return [f"no event was published at or after seq {low}"]
    inside = [q for q in mine if low <= q <= expected[-1]]
    missing, extra = sorted(set(expected) - set(inside)), sorted(set(inside) - set(expected))
    dups = sorted(q for q, n in Counter(inside).items() if n > 1)
    problems = [f"missing {len(missing)} of {len(expected)} events (seq {low}..{expected[-1]}): {missing[:10]}"] if missing else []
    problems += [f"events no other observer saw: {extra[:10]}"] if extra else []
    problems += [f"received twice: {dups[:10]}"] if dups else []
    problems += ["not in seq order"] if inside != sorted(inside) else []
    return problems


def subscriber_window_problems(world: Any, name: str, prefix: str, ref: str) -> list[str]:
    """Subscriber `name` holds every `prefix` event published since the subscribers joined (as `ref` and the
    scenario's own subscriber saw them) and no other: reads the World's subscribers."""
    low = world.vars.get("subscribers_joined_seq")
    if low is None:
        return ["the subscribers' join point was not recorded (use 'these event subscribers listen')"]
    published = [e["seq"] for s in (world.subscribers[ref], world.events) for e in s.matching(prefix)]
    return window_problems([e["seq"] for e in world.subscribers[name].matching(prefix)], published, low)


def request_event_problems(completions_: list[Any], seen_job_ids: set, n: int) -> list[str]:
    """Exactly n requests were made, each succeeded, and each job id is among `seen_job_ids`."""
    problems = [f"{len(completions_)} requests were made, not {n}"] if len(completions_) != n else []
    failed = [(c.prompt, c.status, c.error) for c in completions_ if not (c.ok and c.job_id)]
    problems += [f"{len(failed)} requests did not succeed: {failed[:5]}"] if failed else []
    unseen = sorted(c.job_id for c in completions_ if c.job_id and c.job_id not in seen_job_ids)
    problems += [f"{len(unseen)} jobs without the event: {unseen[:5]}"] if unseen else []
    return problems


# ---- tenants and keys -------------------------------------------------------------------------------------
def read_jobs_across(client: Any, tenants: list[str], pool: int = 16) -> int:
    """Acts: every tenant GETs /v1/jobs/{id} of every ok job of the client (its own and the others'),
    recorded in the client's history as f='get_job'; returns the number of reads."""
    reads = [(c.job_id, t) for c in list(client.completions) if c.ok and c.job_id for t in tenants]
    with ThreadPoolExecutor(pool) as ex:
        list(ex.map(lambda r: client.get_job(r[0], tenant=r[1]), reads))
    return len(reads)


def check_cross_reads(history: Any, tenants: list[str], generate_text: Callable[[str, int, int], str]) -> dict:
    """Every ok job's text is its own prompt's output, its tenant reads it (200, same id) and every other
    tenant in `tenants` was answered 404 for it; a job nobody else tried to read is a failure."""
    owner = {op["job_id"]: op.get("tenant") for op in completions(history, "complete", "ok") if op.get("job_id")}
    wrong_text = [op["job_id"] for op in completions(history, "complete", "ok")
                  if (v := op.get("value") or {}).get("text") != generate_text(v.get("prompt", ""), int(v.get("seed") or 0),
                                                                             int(v.get("max_tokens") or 16))]
    paths = {op["index"]: (op.get("value") or {}).get("path", "") for op in as_ops(history) if op.get("type") == "invoke"}
    reads: dict[tuple, list] = defaultdict(list)
    for op in completions(history, "get_job"):
        reads[(paths.get(op.get("invoke_index"), "").rsplit("/", 1)[-1], op.get("tenant"))].append(op)
    leaks, own_bad, unread = [], [], []
    for job, ten in owner.items():
        for t in tenants:
            got = reads.get((job, t))
            if not got:
                unread.append((job, t))
            elif t == ten and not all(o.get("status") == 200 and ((o.get("value") or {}).get("body") or {}).get("id") == job
                                      for o in got):
                own_bad.append((job, t, [o.get("status") for o in got]))
            elif t != ten and any(o.get("status") != 404 for o in got):
                leaks.append((job, ten, t, [o.get("status") for o in got]))
    cross = sum(len(v) for (j, t), v in reads.items() if j in owner and t != owner[j])
    return {"valid": bool(owner) and not (leaks or own_bad or unread or wrong_text), "jobs": len(owner),
            "cross_reads": cross, "leaks": leaks[:20], "own_reads_failed": own_bad[:20],
            "not_read": unread[:20], "not_read_count": len(unread), "wrong_text": wrong_text[:20]}


def share_key(client: Any, tenant: str, owner: str) -> None:
    """Acts (self-test): `tenant` presents `owner`'s key from now on (the client's sessions are rebuilt)."""
    client.api_keys[tenant] = client.api_keys[owner]
    client.close()


def present_wrong_keys(client: Any, n: int, job_id: str = "job-does-not-exist") -> dict[str, list]:
    """Acts: n distinctive never-valid Bearer keys, each sent to a completion, a job and the workers view;
    returns {key: [statuses]} (the requests are recorded in the client's history)."""
    calls = [("POST", "/v1/completions", {"model": client.model, "prompt": "who am i", "max_tokens": 2}),
             ("GET", f"/v1/jobs/{job_id}", None), ("GET", "/v1/workers", None)]
    out: dict[str, list] = {}
    for _ in range(n):
        key = f"sk-apiary-wrong-{secrets.token_hex(10)}"
        out[key] = [getattr(client.request(m, p, tenant=None, json_body=b, headers={"Authorization": f"Bearer {key}"},
                                           f=f"wrong-key {m} {p}"), "status_code", None) for m, p, b in calls]
    return out


def leaked_secrets(logs: dict[str, str], secrets_: dict[str, str]) -> dict[str, list[str]]:
    """service -> labels of the secrets whose text appears in its log (empty secrets are ignored)."""
    found = {svc: sorted(label for label, s in secrets_.items() if s and s in text) for svc, text in logs.items()}
    return {svc: labels for svc, labels in found.items() if labels}


def scenario_keys(world: Any) -> dict[str, str]:
    """label -> key: the stack's configured API keys and the wrong keys presented in this scenario."""
    wrong = {f"presented wrong key #{i}": k for i, k in enumerate(world.vars.get("wrong_keys") or {})}
    return {**{f"key of {t}": k for t, k in world.cluster.api_keys.items()}, **wrong}


def log_texts(world: Any) -> dict[str, str]:
    """Acts: every service's whole log of this stack (since it started), as text."""
    return {svc: world.service_logs(svc, since=0) for svc in world.cluster.services}


# ---- stress record ------------------------------------------------------------------------------------------
def stress_record_problems(metrics_jsonl: str, latencies_s: list[float], limit_ms: float) -> list[str]:
    """The last 'stress' line of chaos-metrics.jsonl is this load's (same request count, p99 equal to the
    history's within rounding) and its p99 is under limit_ms."""
    lines = [json.loads(x) for x in metrics_jsonl.splitlines() if x.strip()]
    rec = next((x for x in reversed(lines) if x.get("name") == "stress"), None)
    if rec is None:
        return ["no 'stress' line in chaos-metrics.jsonl"]
    p99 = percentile(latencies_s, 99)
    if p99 is None:
        return ["the history holds no completion latency"]
    problems = [f"recorded {rec.get('requests')} requests, the history has {len(latencies_s)}"] if rec.get("requests") != len(latencies_s) else []
    got = rec.get("latency_p99_ms")
    if not isinstance(got, (int, float)) or abs(got - p99 * 1000) > 0.01:
        problems.append(f"recorded p99 {got!r} ms, the history's p99 is {p99 * 1000:.2f} ms")
    elif got >= limit_ms:
        problems.append(f"p99 {got} ms is not under {limit_ms:.0f} ms")
    return problems


def completion_latencies(history: Any) -> list[float]:
    """Client-measured latency (s) of every finished completion in the history."""
    return [v["latency"] for op in completions(history, "complete")
            if isinstance(v := op.get("value") or {}, dict) and isinstance(v.get("latency"), (int, float))]


# ---- packet loss ------------------------------------------------------------------------------------------
def random_drops(iptables_listing: str) -> int:
    """Packets counted by DROP rules with a random statistic match in `iptables -L -v -n -x` output."""
    total = 0
    for line in iptables_listing.splitlines():
        cols = line.split()
        if len(cols) > 2 and cols[0].isdigit() and cols[2] == "DROP" and "statistic mode random" in line:
            total += int(cols[0])
    return total


def loss_drops(cluster: Any, service: str) -> int:
    """Acts: read the packet counters of `service`'s random-loss DROP rules from inside its container."""
    out = cluster.exec(service, ["sh", "-c", "iptables -w -L -v -n -x"], user="root").output
    return random_drops(out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out))


def loss_evidence(world: Any, service: str) -> dict:
    """Acts: packets dropped by `service`'s random-loss rules and the scenario's ok jobs it completed (of all),
    also written as a 'packet-loss' line to the run's chaos-metrics.jsonl."""
    data = {"service": service, "dropped_packets": loss_drops(world.cluster, service),
            "jobs_completed_there": jobs_completed_on(world.history.ops, world.events.events, service),
            "jobs_ok": len(completions(world.history, "complete", "ok"))}
    write_metrics(setting(world.settings, "report_dir", None), "packet-loss", data)
    return data


def jobs_completed_on(ops: list[dict], events: Iterable[dict], worker: str) -> int:
    """ok completions whose job.completed (or job.dispatched) event names `worker`."""
    return sum(1 for op in annotate_workers(ops, events) if op.get("f") == "complete" and op.get("type") == "ok"
               and op.get("worker_id") == worker)


# ---- background completions ----------------------------------------------------------------------------------
def finish_problems(done: list[Any], generate_text: Callable[[str, int, int], str], allow_error: bool) -> list[dict]:
    """Each completion ended with exactly its prompt's text, or (allow_error) with an explicit error code and
    at most a prefix of the text; transport errors, silent truncations and empty joins are problems."""
    if not done:
        return [{"problem": "no running completion to finish"}]
    bad = []
    for c in done:
        expected = generate_text(c.prompt, c.seed, c.max_tokens)
        if c.ok and c.text == expected:
            continue
        explicit = bool((c.error or {}).get("code")) and not c.done and expected.startswith(c.text)
        if not (allow_error and explicit):
            bad.append({"prompt": c.prompt, "status": c.status, "done": c.done, "error": c.error,
                        "exception": c.exception, "text_ok": c.text == expected})
    return bad


def wait_no_problems(world: Any, problems: Callable[[], list], timeout_s: float, what: str) -> None:
    """Poll `problems()` until it is empty within the World's scaled timeout, else fail naming the last ones."""
    deadline = time.monotonic() + world.scaled(timeout_s)
    while (found := problems()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not found, f"{what} within {world.scaled(timeout_s):.2f}s: {found}"
