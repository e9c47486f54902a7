"""The soak's client load against a fake client: pacing, nonces in prompt and key, retries, bounds."""
import random
import threading

from apiary_suite.soak_load import LoadPlan, SoakLoad, nonce_for, should_retry


class Reply:
    def __init__(self, status, done=True, exception=None):
        self.status, self.done, self.exception, self.headers, self.error = status, done, exception, {}, None

    @property
    def ok(self):
        return self.status == 200 and self.done


class FakeClient:
    """Answers from a script of statuses per prompt (then 200); records every call."""

    def __init__(self, script=None):
        self.calls, self.script, self.lock = [], dict(script or {}), threading.Lock()

    def complete(self, prompt, **kw):
        with self.lock:
            self.calls.append((prompt, kw))
            seq = kw["annotate"]["seq"]
            queue = self.script.get(seq, [])
            status = queue.pop(0) if queue else 200
        return Reply(status, exception="boom" if status is None else None)


def test_nonces_are_unique_and_carried_in_prompt_header_and_history_value():
    client = FakeClient()
    load = SoakLoad(client, LoadPlan(rate_rps=200, clients=4, max_requests=40), seed=1, tag="t")
    load.start(5.0).finish(10)
    nonces = [kw["annotate"]["nonce"] for _, kw in client.calls]
    assert len(nonces) == 40 == len(set(nonces)) and load.stats.ok == 40
    for prompt, kw in client.calls:
        assert f"nonce:{kw['annotate']['nonce']}" in prompt and kw["headers"]["Idempotency-Key"] == kw["annotate"]["nonce"]


def test_retries_reuse_the_key_and_give_up_after_max_tries():
    client = FakeClient({0: [503, None], 1: [503, 503, 503, 503, 503]})
    load = SoakLoad(client, LoadPlan(rate_rps=100, clients=1, max_requests=2, max_tries=4), seed=2)
    load.start(30.0).finish(30)
    by_seq = {}
    for _, kw in client.calls:
        by_seq.setdefault(kw["annotate"]["seq"], []).append((kw["annotate"]["try"], kw["headers"]["Idempotency-Key"]))
    assert [t for t, _ in by_seq[0]] == [0, 1, 2] and len({k for _, k in by_seq[0]}) == 1
    assert [t for t, _ in by_seq[1]] == [0, 1, 2, 3]
    assert load.stats.ok == 1 and load.stats.gave_up == 1


def test_a_definite_client_error_is_not_retried():
    assert not should_retry(Reply(400)) and not should_retry(Reply(409))
    assert should_retry(Reply(429)) and should_retry(Reply(200, done=False)) and should_retry(Reply(None, exception="x"))
    assert not should_retry(Reply(502))


def test_the_load_stops_at_its_deadline_by_itself():
    client = FakeClient()
    load = SoakLoad(client, LoadPlan(rate_rps=5, clients=2), seed=3).start(0.6)
    load.finish(5)
    assert 1 <= len(client.calls) <= 5


def test_nonce_is_deterministic_for_a_seeded_rng():
    assert nonce_for("s", 7, random.Random(1)) == nonce_for("s", 7, random.Random(1)) != nonce_for("s", 7, random.Random(2))
