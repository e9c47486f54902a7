"""The etcd adapter against a fake v3 JSON gateway (no etcd, no Docker): encodings, cas, errors that name the
member, op outcomes (ok / fail / info) and a history the register checker accepts; a stale fake is caught."""
from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from examples.etcd.adapter import EtcdClient, EtcdError, EtcdUnavailable, RegisterWorkload
from harness.checkers.linearizable import check_register
from harness.history import History

MEMBER_ID, LEADER_ID = 13668033151171901709, 975050037397374526


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(data: str) -> str:
    return base64.b64decode(data).decode()


class FakeGateway(BaseHTTPRequestHandler):
    """etcd 3.4's JSON gateway for put/range/txn/status/member list over one dict (answers shaped as etcd's)."""

    protocol_version = "HTTP/1.1"
    server: "FakeServer"

    disable_nagle_algorithm = True   # headers and body go out in two writes: no 40 ms delayed-ack stall

    def log_message(self, *args):  # quiet
        pass

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(200, {"health": "true"}) if self.path == "/health" else self.reply(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        srv, header = self.server, {"member_id": str(MEMBER_ID), "revision": "7", "raft_term": "3"}
        if srv.status_override:
            return self.reply(srv.status_override, {"error": "etcdserver: request timed out", "code": 14})
        with srv.lock:
            if self.path == "/v3/kv/put":
                srv.write(unb64(body["key"]), unb64(body["value"]))
                return self.reply(200, {"header": header})
            if self.path == "/v3/kv/range":
                value = srv.read(unb64(body["key"]))
                kvs = [] if value is None else [{"key": body["key"], "value": b64(value), "version": "1"}]
                return self.reply(200, {"header": header, **({"kvs": kvs, "count": "1"} if kvs else {})})
            if self.path == "/v3/kv/txn":
                (cmp,), (put,) = body["compare"], body["success"]
                key, current = unb64(cmp["key"]), srv.values.get(unb64(cmp["key"]), [None])[-1]
                matches = current is None if cmp["target"] == "VERSION" else current == unb64(cmp["value"])
                if matches:
                    srv.write(key, unb64(put["request_put"]["value"]))
                return self.reply(200, {"header": header, **({"succeeded": True} if matches else {})})
        if self.path == "/v3/maintenance/status":
            return self.reply(200, {"header": header, "version": "3.4.23", "leader": str(LEADER_ID),
                                    "raftIndex": "11", "raftTerm": "3"})
        if self.path == "/v3/cluster/member/list":
            return self.reply(200, {"header": header, "members": [
                {"ID": str(LEADER_ID), "name": "etcd2", "peerURLs": ["http://etcd2-peer:2380"],
                 "clientURLs": ["http://etcd2:2379"]}]})
        self.reply(400, {"error": f"unknown path {self.path}", "code": 3})


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, stale: bool = False):
        super().__init__(("127.0.0.1", 0), FakeGateway)
        self.lock, self.values, self.stale, self.status_override = threading.Lock(), {}, stale, 0

    def write(self, key: str, value: str) -> None:
        self.values.setdefault(key, []).append(value)

    def read(self, key: str) -> str | None:
        """The latest value; a stale server answers the one before it (a lagging member's serializable read)."""
        versions = self.values.get(key, [])
        if self.stale and len(versions) >= 2:
            return versions[-2]
        return versions[-1] if versions else None


@pytest.fixture
def gateway():
    servers = []

    def start(stale: bool = False) -> FakeServer:
        srv = FakeServer(stale)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def url_of(srv: FakeServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def test_client_puts_gets_and_swaps_with_base64_keys(gateway):
    """put/get round-trip text through base64; cas from None means "absent"; a mismatched cas is False."""
    srv = gateway()
    client = EtcdClient(url_of(srv))
    assert client.get("k") is None
    assert client.cas("k", None, "a") is True and client.cas("k", None, "b") is False
    assert client.get("k") == "a"
    assert client.cas("k", "a", "c") is True and client.cas("k", "a", "d") is False
    assert client.put("k", "é/ü") == 7
    assert client.get("k", serializable=True) == "é/ü"
    assert srv.values["k"] == ["a", "c", "é/ü"]


def test_status_and_members_are_integers_not_strings(gateway):
    client = EtcdClient(url_of(gateway()))
    assert client.status() == {"leader": LEADER_ID, "member_id": MEMBER_ID, "raft_term": 3, "raft_index": 11,
                               "is_leader": False, "version": "3.4.23"}
    assert client.members() == [{"id": LEADER_ID, "name": "etcd2", "peer_urls": ["http://etcd2-peer:2380"],
                                 "client_urls": ["http://etcd2:2379"]}]
    assert client.healthy() is True


def test_errors_name_the_member_and_say_whether_the_outcome_is_known(gateway):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(EtcdUnavailable, match=rf"etcd member http://127.0.0.1:{port}: /v3/kv/put: Connection"):
        EtcdClient(f"http://127.0.0.1:{port}").put("k", "v")
    srv = gateway()
    srv.status_override = 503
    with pytest.raises(EtcdError, match=r"HTTP 503: etcdserver: request timed out") as err:
        EtcdClient(url_of(srv)).put("k", "v")
    assert err.value.url == url_of(srv) and not err.value.definite
    srv.status_override = 400
    with pytest.raises(EtcdError) as err:
        EtcdClient(url_of(srv)).get("k")
    assert err.value.definite


def test_a_member_that_never_answers_times_out():
    """A listening socket that never accepts: the request is sent, no answer comes, the timeout names it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(EtcdUnavailable, match=rf"etcd member {url}: /v3/kv/range: no answer within 0.2 s"):
            EtcdClient(url, timeout_s=0.2).get("k")


def test_workload_records_ops_in_the_checkers_shape_and_they_check_valid(gateway):
    members = [url_of(gateway()) for _ in range(1)] * 3   # one consistent store behind three "members"
    work = RegisterWorkload(members, keys=["a", "b"], threads=3, duration_s=5, max_ops=300, seed=4)
    summary = work.run()
    ops = work.history.ops
    assert summary["ops"] == 300 and summary["info"] == 0
    assert summary["by_f"]["cas"].get("ok", 0) > 0 and summary["by_f"]["cas"].get("fail", 0) > 0
    invokes = {op["index"]: op for op in ops if op["type"] == "invoke"}
    writes = [op["value"] for op in invokes.values() if op["f"] == "write"]
    assert len(writes) == len(set(writes)) and all(w.startswith("p") for w in writes)
    for done in (op for op in ops if op["type"] != "invoke"):
        inv = invokes[done["invoke_index"]]
        assert done["key"] == inv["key"] in ("a", "b")
        if inv["f"] == "cas":
            assert isinstance(inv["value"], list) and len(inv["value"]) == 2
        if inv["f"] == "read":
            assert inv["value"] is None
    verdict = check_register(ops)
    assert verdict["valid"] is True, verdict
    assert verdict["ops"] == summary["ok"]


def test_stale_reads_are_caught_by_the_checker(gateway):
    """Selftest: a member that answers the previous value makes the same workload non-linearizable."""
    work = RegisterWorkload([url_of(gateway(stale=True))], keys=["a"], threads=1, duration_s=2, max_ops=40,
                            seed=1, mix=(("read", 0.5), ("write", 0.5)))
    work.run()
    verdict = check_register(work.history.ops)
    assert verdict["valid"] is False and verdict["anomalies"], verdict


def test_an_unknown_outcome_is_info_and_the_process_moves_on():
    """Timeouts complete as info; the thread's next op runs under a new process id (its old op may land)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        history = History()
        RegisterWorkload([url], history, keys=["a"], threads=2, duration_s=0.5, max_ops=4, timeout_s=0.1).run()
    done = [op for op in history.ops if op["type"] != "invoke"]
    assert done and {op["type"] for op in done} == {"info"}
    assert all("no answer within 0.1 s" in op["error"] for op in done)
    invokes = [op for op in history.ops if op["type"] == "invoke"]
    assert len({op["process"] for op in invokes}) == len(invokes) == 4


def test_a_paced_workload_keeps_its_rate_and_an_unpaced_one_does_not(gateway):
    """rate_per_s spaces each thread's op starts by threads/rate s (on a fixed schedule: a late start is not
    followed by a burst): 40 ops/s over 1.5 s is about 60 ops, where the same workload unpaced runs to its op
    budget; a rate that is not positive is refused."""
    url = url_of(gateway())
    paced = RegisterWorkload([url], keys=["a"], threads=4, duration_s=1.5, max_ops=2000, seed=2, rate_per_s=40)
    assert 50 <= paced.run()["ops"] <= 64
    starts: dict[int, list[float]] = {}
    for op in paced.history.ops:
        if op["type"] == "invoke":
            starts.setdefault(op["process"], []).append(op["time"])
    gaps = sorted(b - a for times in starts.values() for a, b in zip(times, times[1:]))
    median = gaps[len(gaps) // 2] if gaps else None
    assert gaps and 0.09 <= median <= 0.12 and gaps[0] >= 0.05, f"a thread's op starts, not 4/40 s apart: {gaps}"
    unpaced = RegisterWorkload([url], keys=["a"], threads=4, duration_s=1.5, max_ops=200, seed=2)
    assert unpaced.run()["ops"] == 200
    with pytest.raises(ValueError, match="rate_per_s"):
        RegisterWorkload([url], rate_per_s=0)
