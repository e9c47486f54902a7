"""apiary_suite.proofs and apiary_suite.buffering_proxy on crafted inputs: each proof holds on good input and fails on
the bad input it exists to catch (a buffered stream, a lost end event, a cross-tenant 200, a leaked key...)."""
import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import requests

from apiary_suite import proofs
from apiary_suite.buffering_proxy import BufferingProxy, body_length, close_request
from apiary_suite.client import SSEParser
from harness.history import History
from services.protocol import generate_text, generate_token

TOKENS = [generate_token("p", 1, i) for i in range(6)]


# ---- streams ------------------------------------------------------------------------------------------
def test_stream_of_single_tokens_spread_over_time_holds():
    assert proofs.stream_problems(TOKENS, [0.1 * i for i in range(6)], TOKENS, 6, 0.4) == []


def test_chunks_of_several_whole_tokens_hold():
    chunks = [TOKENS[0] + TOKENS[1], TOKENS[2], "".join(TOKENS[3:])]
    assert proofs.stream_problems(chunks, [0.0, 0.5, 1.0], TOKENS, 3, 0.5) == []


def test_a_buffered_stream_fails_on_spread():
    bad = proofs.stream_problems(TOKENS, [1.0001] * 6, TOKENS, 6, 0.4)
    assert len(bad) == 1 and "buffered" in bad[0]


def test_swapped_tokens_fail():
    chunks = [TOKENS[1], TOKENS[0], *TOKENS[2:]]
    assert any("not the next whole token" in b for b in proofs.stream_problems(chunks, list(range(6)), TOKENS, 1, 0))


def test_a_chunk_splitting_a_token_fails():
    chunks = [TOKENS[0][:2], TOKENS[0][2:], *TOKENS[1:]]
    assert proofs.stream_problems(chunks, list(range(7)), TOKENS, 1, 0)


def test_missing_tokens_and_too_few_chunks_fail():
    bad = proofs.stream_problems(TOKENS[:3], [0, 1, 2], TOKENS, 5, 0)
    assert any("3 of 6 tokens" in b for b in bad) and any("fewer than 5" in b for b in bad)


def test_no_arrival_times_fail():
    assert proofs.stream_problems([], [], [], 0, 0)


# ---- subscriber windows ---------------------------------------------------------------------------------
def test_window_with_every_event_holds_and_ignores_events_before_the_join():
    assert proofs.window_problems([3, 5, 6, 8], [5, 6, 8], 5) == []


@pytest.mark.parametrize("mine,why", [([6, 8], "missing"), ([5, 6], "missing"), ([5, 6, 7, 8], "no other observer"),
                                      ([5, 6, 6, 8], "twice"), ([5, 8, 6], "order")],
                         ids=["lost-first", "lost-last", "extra", "duplicate", "order"])
def test_window_problems_are_caught(mine, why):
    assert any(why in p for p in proofs.window_problems(mine, [5, 6, 8], 5))


def test_window_with_nothing_published_fails():
    assert proofs.window_problems([], [1, 2], 3) == ["no event was published at or after seq 3"]


def test_next_seq():
    subs = [SimpleNamespace(events=[{"seq": 4}, {"seq": 9}]), SimpleNamespace(events=[{"x": 1}])]
    assert proofs.next_seq(subs) == 10 and proofs.next_seq([SimpleNamespace(events=[])]) == 0


def _c(job_id, ok=True, **kw):
    return SimpleNamespace(job_id=job_id, ok=ok, prompt=kw.get("prompt", "p"), status=200 if ok else 502,
                           error=None if ok else {"code": "worker_error"}, **{k: v for k, v in kw.items() if k != "prompt"})


def test_request_events():
    assert proofs.request_event_problems([_c("j1"), _c("j2")], {"j1", "j2"}, 2) == []
    assert proofs.request_event_problems([], set(), 0) == []
    assert proofs.request_event_problems([], set(), 3) == ["0 requests were made, not 3"]
    bad = proofs.request_event_problems([_c("j1", ok=False), _c("j2")], {"j1"}, 2)
    assert any("did not succeed" in b for b in bad) and any("without the event" in b for b in bad)


# ---- cross-tenant reads -----------------------------------------------------------------------------------
def _job(h, tenant, prompt, job_id, text=None):
    op = h.invoke(tenant, "complete", {"prompt": prompt, "seed": 0, "max_tokens": 4}, tenant=tenant)
    h.complete(op, "ok", {"prompt": prompt, "seed": 0, "max_tokens": 4,
                          "text": generate_text(prompt, 0, 4) if text is None else text}, job_id=job_id, tenant=tenant)


def _read(h, tenant, job_id, status):
    op = h.invoke(tenant, "get_job", {"method": "GET", "path": f"/v1/jobs/{job_id}"}, tenant=tenant)
    h.complete(op, "ok" if status < 400 else "fail", {"status": status, "body": {"id": job_id} if status == 200 else {}},
               tenant=tenant, status=status)


def _isolated():
    h = History()
    _job(h, "a", "pa", "ja")
    _job(h, "b", "pb", "jb")
    for t, j, st in (("a", "ja", 200), ("b", "ja", 404), ("a", "jb", 404), ("b", "jb", 200)):
        _read(h, t, j, st)
    return h


def test_cross_reads_hold_when_every_foreign_read_is_404():
    r = proofs.check_cross_reads(_isolated(), ["a", "b"], generate_text)
    assert r["valid"] and r["cross_reads"] == 2, r


def test_a_foreign_200_is_a_leak():
    h = _isolated()
    _read(h, "b", "ja", 200)
    r = proofs.check_cross_reads(h, ["a", "b"], generate_text)
    assert not r["valid"] and r["leaks"] == [("ja", "a", "b", [404, 200])]


def test_an_unread_job_and_a_failed_own_read_fail():
    h = History()
    _job(h, "a", "pa", "ja")
    _read(h, "a", "ja", 404)
    r = proofs.check_cross_reads(h, ["a", "b"], generate_text)
    assert not r["valid"] and r["not_read"] == [("ja", "b")] and r["own_reads_failed"] == [("ja", "a", [404])]


def test_another_prompts_text_fails():
    h = History()
    _job(h, "a", "pa", "ja", text=generate_text("pb", 0, 4))
    _read(h, "a", "ja", 200)
    assert proofs.check_cross_reads(h, ["a"], generate_text)["wrong_text"] == ["ja"]


def test_no_jobs_is_not_isolation():
    assert not proofs.check_cross_reads(History(), ["a", "b"], generate_text)["valid"]


# ---- keys in logs ---------------------------------------------------------------------------------------------
def test_leaked_secrets():
    logs = {"orchestrator": '{"event": "auth.denied", "key": "sk-wrong-1"}', "hive-a": "clean"}
    assert proofs.leaked_secrets(logs, {"w1": "sk-wrong-1", "w2": "sk-wrong-2", "empty": ""}) == {"orchestrator": ["w1"]}
    assert proofs.leaked_secrets({"hive-a": "clean"}, {"w1": "sk-wrong-1"}) == {}


def test_scenario_keys_label_configured_and_presented_keys():
    world = SimpleNamespace(cluster=SimpleNamespace(api_keys={"tenant-a": "ka"}), vars={"wrong_keys": {"kw": [401]}})
    assert proofs.scenario_keys(world) == {"key of tenant-a": "ka", "presented wrong key #0": "kw"}


# ---- stress record ------------------------------------------------------------------------------------------
LAT = [0.010, 0.012, 0.020, 0.0305]


def _metrics(**over):
    line = {"name": "stress", "requests": 4, "latency_p99_ms": 30.5, **over}
    return json.dumps({"name": "queries"}) + "\n" + json.dumps(line) + "\n"


def test_stress_record_holds():
    assert proofs.stress_record_problems(_metrics(), LAT, 100) == []


@pytest.mark.parametrize("text,limit,why", [("", 100, "no 'stress' line"), (_metrics(latency_p99_ms=12.0), 100, "history's p99"),
                                            (_metrics(requests=9), 100, "9 requests"), (_metrics(), 30, "not under")],
                         ids=["missing", "other-figure", "other-load", "over-limit"])
def test_stress_record_problems(text, limit, why):
    assert any(why in p for p in proofs.stress_record_problems(text, LAT, limit))


def test_stress_record_without_latencies_fails():
    assert proofs.stress_record_problems(_metrics(), [], 100) == ["the history holds no completion latency"]


def test_completion_latencies():
    h = History()
    op = h.invoke("a", "complete", {})
    h.complete(op, "ok", {"latency": 0.5})
    op = h.invoke("a", "get_job", {})
    h.complete(op, "ok", {"latency": 9})
    assert proofs.completion_latencies(h) == [0.5]


# ---- packet loss --------------------------------------------------------------------------------------------
LISTING = """Chain INPUT (policy ACCEPT 0 packets, 0 bytes)
    pkts      bytes target     prot opt in     out     source               destination
    1200    90000 APIARY_NEMESIS  0    --  *      *       0.0.0.0/0            0.0.0.0/0

Chain APIARY_NEMESIS (1 references)
    pkts      bytes target     prot opt in     out     source               destination
     117     8190 DROP       6    --  *      *       0.0.0.0/0            0.0.0.0/0            statistic mode random probability 0.10000000009
      40     2400 DROP       6    --  *      *       10.0.0.1             0.0.0.0/0
       3      180 DROP       6    --  *      *       0.0.0.0/0            0.0.0.0/0            statistic mode random probability 0.05000000000 /* apiary-loss-7 */
"""


def test_random_drops_count_only_random_loss_rules():
    assert proofs.random_drops(LISTING) == 120   # commented rules (the fault kinds tag theirs) count too


def test_no_loss_rule_counts_zero():
    assert proofs.random_drops(LISTING.replace("statistic mode random", "")) == 0
    assert proofs.random_drops("") == 0


def test_loss_evidence_reads_the_counters_and_records_them(tmp_path):
    h = History()
    op = h.invoke("a", "complete", {})
    h.complete(op, "ok", {}, job_id="j1")
    cluster = SimpleNamespace(exec=lambda svc, cmd, user: SimpleNamespace(output=LISTING.encode()))
    world = SimpleNamespace(cluster=cluster, history=h, settings={"report_dir": str(tmp_path)},
                            events=SimpleNamespace(events=[{"topic": "job.completed", "job_id": "j1", "worker_id": "w1"}]))
    ev = proofs.loss_evidence(world, "w1")
    assert ev == {"service": "w1", "dropped_packets": 120, "jobs_completed_there": 1, "jobs_ok": 1}
    assert json.loads((tmp_path / "chaos-metrics.jsonl").read_text())["dropped_packets"] == 120


def test_jobs_completed_on():
    ops = [{"f": "complete", "type": "ok", "job_id": "j1"}, {"f": "complete", "type": "ok", "job_id": "j2"},
           {"f": "complete", "type": "fail", "job_id": "j3"}]
    events = [{"topic": "job.completed", "job_id": "j1", "worker_id": "w1"},
              {"topic": "job.completed", "job_id": "j2", "worker_id": "w2"},
              {"topic": "job.dispatched", "job_id": "j3", "worker_id": "w1"}]
    assert proofs.jobs_completed_on(ops, events, "w1") == 1 and proofs.jobs_completed_on(ops, events, "w9") == 0


# ---- background completions ----------------------------------------------------------------------------------
def _done(ok=True, text=None, error=None, done=None, exception=None):
    return SimpleNamespace(prompt="p", seed=1, max_tokens=6, ok=ok, text=generate_text("p", 1, 6) if text is None else text,
                           error=error, done=ok if done is None else done, exception=exception, status=200 if ok else 502)


def test_exact_texts_finish():
    assert proofs.finish_problems([_done(), _done()], generate_text, allow_error=False) == []


def test_an_explicit_error_passes_only_when_allowed():
    err = _done(ok=False, text=TOKENS[0], error={"code": "worker_lost"})
    assert proofs.finish_problems([err], generate_text, allow_error=True) == []
    assert proofs.finish_problems([err], generate_text, allow_error=False)


@pytest.mark.parametrize("c", [_done(ok=False, text="", exception="ConnectionError()"),
                               _done(ok=False, text=TOKENS[0], done=False),
                               _done(ok=True, text=TOKENS[0]),
                               _done(ok=False, text=TOKENS[1], error={"code": "worker_lost"})],
                         ids=["transport-error", "silent-truncation", "short-text", "foreign-prefix"])
def test_not_explicit_endings_fail_even_when_errors_are_allowed(c):
    assert proofs.finish_problems([c], generate_text, allow_error=True)


def test_nothing_to_finish_fails():
    assert proofs.finish_problems([], generate_text, allow_error=True)


def test_wait_no_problems():
    world = SimpleNamespace(scaled=lambda s: s)
    calls = iter([["x"], []])
    proofs.wait_no_problems(world, lambda: next(calls), 1, "settles")
    with pytest.raises(AssertionError, match="never settles within 0.10s: \\['still'\\]"):
        proofs.wait_no_problems(world, lambda: ["still"], 0.1, "never settles")


# ---- buffering proxy ---------------------------------------------------------------------------------------------
def test_request_head_helpers():
    head = b"POST /v1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 12"
    assert close_request(head) == b"POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
    assert body_length(head) == 12 and body_length(b"GET / HTTP/1.1\r\nHost: x") == 0


def _slow_sse_server(events: int, gap_s: float):
    """A loopback server (two connections) that sends `events` SSE events `gap_s` apart, chunked like uvicorn."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        for _ in range(2):
            conn, _ = srv.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                             b"Connection: close\r\n\r\n")
                for i in range(events):
                    event = f"data: t{i}\n\n".encode()
                    conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                    time.sleep(gap_s)
                conn.sendall(b"0\r\n\r\n")
    threading.Thread(target=serve, daemon=True).start()
    return srv


def _arrivals(url: str) -> list[float]:
    t0, out, parser = time.monotonic(), [], SSEParser()
    with requests.get(url, stream=True, timeout=10) as resp:
        for chunk in resp.iter_content(chunk_size=None):
            out += [time.monotonic() - t0 for _ in parser.feed(chunk)]
    return out


def test_the_proxy_turns_a_stream_into_one_burst():
    srv = _slow_sse_server(5, 0.1)
    direct_url = f"http://127.0.0.1:{srv.getsockname()[1]}/s"
    direct = _arrivals(direct_url)
    proxy = BufferingProxy(direct_url, timeout_s=5).start()
    try:
        buffered = _arrivals(proxy.url + "/s")
    finally:
        proxy.stop()
        srv.close()
    assert len(direct) == len(buffered) == 5
    assert direct[-1] - direct[0] >= 0.3 and buffered[-1] - buffered[0] < 0.05, (direct, buffered)
    assert proxy.exchanges == 1
