"""HTTP API against a real orchestrator subprocess and a fake hive: shapes, streaming, openai client."""
from __future__ import annotations

import json

import openai
import requests

from services.protocol import generate_text
from .fakes import wait_until


def sse_events(resp):
    """Parse an SSE response into [(event, data)]."""
    events, event, data = [], "message", []
    for line in resp.iter_lines(decode_unicode=True):
        if line == "":
            if data:
                events.append((event, "\n".join(data)))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        events.append((event, "\n".join(data)))
    return events


def test_completion_shape_and_text(orch, make_hive):
    make_hive()
    r = orch.post("/v1/completions", {"model": "tinyllama", "prompt": "hello bees", "max_tokens": 5, "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert r.headers["x-apiary-job-id"] == body["id"]
    assert body["choices"][0]["text"] == generate_text("hello bees", 7, 5)
    assert body["choices"][0]["finish_reason"] == "length" and body["choices"][0]["logprobs"] is None
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    job = orch.get(f"/v1/jobs/{body['id']}").json()
    assert job["state"] == "completed" and job["attempts"] == 1 and job["worker_id"]
    assert [h["state"] for h in job["history"]] == ["accepted", "dispatched", "running", "completed"]


def test_prompt_list_of_one(orch, make_hive):
    make_hive()
    r = orch.post("/v1/completions", {"model": "tinyllama", "prompt": ["x"], "max_tokens": 2})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == generate_text("x", 0, 2)


def test_chat_shape(orch, make_hive):
    make_hive()
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    r = orch.post("/v1/chat/completions", {"model": "tinyllama", "messages": msgs, "max_tokens": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": generate_text("be brief\nhi", 0, 3)}


def test_stream_completion(orch, make_hive):
    make_hive()
    r = orch.post("/v1/completions", {"model": "tinyllama", "prompt": "p", "max_tokens": 4, "stream": True},
                  stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[-1] == ("message", "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == generate_text("p", 0, 4)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["id"] == r.headers["x-apiary-job-id"] for c in chunks)


def test_stream_chat(orch, make_hive):
    make_hive()
    r = orch.post("/v1/chat/completions", {"model": "tinyllama", "messages": [{"role": "user", "content": "q"}],
                                           "max_tokens": 3, "stream": True}, stream=True)
    assert r.status_code == 200, r.text
    events = sse_events(r)
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == generate_text("q", 0, 3) and chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_chat_max_completion_tokens_and_usage_chunk(orch, make_hive):
    make_hive()
    body = {"model": "tinyllama", "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
            "max_completion_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}
    r = orch.post("/v1/chat/completions", body, stream=True)
    assert r.status_code == 200, r.text
    chunks = [json.loads(d) for _, d in sse_events(r)[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == generate_text("q", 0, 3)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_openai_client(orch, make_hive):
    make_hive()
    client = openai.OpenAI(base_url=orch.url + "/v1", api_key="key-a", max_retries=0, timeout=10)
    c = client.completions.create(model="tinyllama", prompt="abc", max_tokens=3, seed=1)
    assert c.choices[0].text == generate_text("abc", 1, 3) and c.usage.completion_tokens == 3
    parts = [ch.choices[0].text for ch in client.completions.create(model="tinyllama", prompt="abc", max_tokens=3,
                                                                     seed=1, stream=True)]
    assert "".join(parts) == generate_text("abc", 1, 3)
    msgs = [{"role": "user", "content": "hello"}]
    chat = client.chat.completions.create(model="tinyllama", messages=msgs, max_tokens=4)
    assert chat.choices[0].message.content == generate_text("hello", 0, 4)
    deltas = [ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        model="tinyllama", messages=msgs, max_tokens=4, stream=True) if ch.choices]
    assert "".join(deltas) == generate_text("hello", 0, 4)
    models = client.models.list()
    assert "tinyllama" in [m.id for m in models.data]
    try:
        client.completions.create(model="nope", prompt="x")
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as exc:
        assert exc.status_code == 404


def test_workers_models_health_ready_openapi(orch, make_hive):
    hive = make_hive()
    workers = orch.get("/v1/workers").json()
    mine = [w for w in workers["workers"] if w["hive"] == hive.id]
    assert len(mine) == 2 and all(w["state"] == "ready" and w["slots"] == 4 for w in mine)
    wait_until(lambda: all(w["last_heartbeat_age_s"] is not None and w["last_heartbeat_age_s"] < 1 for w in
                           orch.get("/v1/workers").json()["workers"] if w["hive"] == hive.id), 5, "worker ages")
    assert any(h["id"] == hive.id and h["state"] == "ready" for h in workers["hives"])
    model = [m for m in orch.get("/v1/models").json()["data"] if m["id"] == "tinyllama"][0]
    assert model["state"] == "available" and set(w["id"] for w in mine) <= set(model["workers"])
    assert requests.get(orch.url + "/health").json() == {"status": "ok", "registry": "ok"}
    assert requests.get(orch.url + "/ready").status_code == 200
    spec = requests.get(orch.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1") and "/v1/completions" in spec["paths"]
    metrics = requests.get(orch.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in ("apiary_queue_depth", "apiary_jobs_inflight", "apiary_workers", "apiary_hives",
                 "apiary_job_latency_seconds_bucket", "apiary_http_requests_total"):
        assert name in metrics.text


def test_unknown_route_is_json_404(orch):
    r = orch.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
