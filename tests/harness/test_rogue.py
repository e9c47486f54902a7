"""Rogue frames decode to the documented error codes; the probe script talks to a local ROUTER."""
import json
import threading

import pytest
import zmq

from apiary_suite import rogue
from services import protocol as p


@pytest.mark.parametrize("kind", rogue.MALFORMED_KINDS)
def test_malformed_frames_raise_the_expected_code(kind):
    with pytest.raises(p.ProtocolError) as err:
        p.decode(rogue.malformed(kind))
    assert err.value.code == rogue.EXPECTED_CODE[kind]


def test_probe_round_trip_against_a_local_router():
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def serve():
        for _ in range(2):
            if not router.poll(3000):
                return
            ident, *frames = router.recv_multipart()
            try:
                msg = p.decode(frames)
                router.send_multipart([ident, *p.encode(p.READY, {"role": "orchestrator", "id": "o", "you": msg.body["id"]})])
            except p.ProtocolError as exc:
                router.send_multipart([ident, *p.encode(p.ERROR, p.error_body(exc.code, exc.reason))])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    spec = json.dumps({"endpoint": f"tcp://127.0.0.1:{port}", "identity": "probe-1",
                       "steps": [rogue.step(rogue.ready_frames("hive", "probe-1")), rogue.step(rogue.malformed("bad_json"))]})
    out = rogue.probe(spec)
    t.join(3)
    router.close(0)
    replies = [[rogue.decode_reply(r) for r in st["replies"]] for st in out["steps"]]
    assert replies[0][0]["command"] == "READY" and replies[0][0]["body"]["you"] == "probe-1"
    assert replies[1][0]["command"] == "ERROR" and replies[1][0]["body"]["code"] == "bad_body"


def test_probe_script_is_self_contained():
    compile(rogue.PROBE_SCRIPT, "<probe>", "exec")
    assert "from services" not in rogue.PROBE_SCRIPT and "harness" not in rogue.PROBE_SCRIPT
