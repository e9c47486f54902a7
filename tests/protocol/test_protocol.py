"""AMDP/1 encode/decode: round trips, every malformed-frame class, events, the mock model."""
import pytest
from hypothesis import given, settings, strategies as st

from services import protocol as p

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=10), kids, max_size=4)), max_leaves=12)

REQUEST_BODY = dict(job_id="j1", trace_id="t1", worker_id="w1", model="m", prompt="hi",
                    max_tokens=4, seed=7, attempt=1)


def _valid_body(command: bytes) -> dict:
    """Return a body satisfying the command's required fields."""
    samples = {str: "x", int: 1, list: [], dict: {}, bool: True}
    body = {}
    for field, kind in p.REQUIRED[command].items():
        body[field] = samples.get(kind, 1.5) if not isinstance(kind, tuple) else 1.5
    return body


@settings(max_examples=200, deadline=None)
@given(command=st.sampled_from(sorted(p.COMMAND_NAMES)),
       extra=st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=5))
def test_round_trip_any_command_and_extra_fields(command, extra):
    """decode(encode(c, body)) gives back c and the same body, with extra fields kept."""
    body = {**extra, **_valid_body(command)}
    message = p.decode(p.encode(command, body))
    assert message.command == command
    assert message.body == body


@given(prompt=st.text(max_size=200), seed=st.integers(0, 2**31), n=st.integers(0, 50))
def test_generate_text_is_deterministic_concatenation(prompt, seed, n):
    """The mock model's text is the concatenation of its tokens and repeatable."""
    text = p.generate_text(prompt, seed, n)
    assert text == "".join(p.generate_token(prompt, seed, i) for i in range(n))
    assert text == p.generate_text(prompt, seed, n)
    assert len(text.split()) == n


@pytest.mark.parametrize("frames, code", [
    ([p.HEADER, p.READY], p.BAD_FRAME),
    ([p.HEADER, p.READY, b"{}", b"extra"], p.BAD_FRAME),
    ([], p.BAD_FRAME),
    ([b"MDPW01", p.READY, b"{}"], p.BAD_PROTOCOL),
    ([b"AMDP02", p.READY, b"{}"], p.UNSUPPORTED_VERSION),
    ([p.HEADER, b"\x7f", b"{}"], p.UNKNOWN_COMMAND),
    ([p.HEADER, b"", b"{}"], p.UNKNOWN_COMMAND),
    ([p.HEADER, p.HEARTBEAT, b"{not json"], p.BAD_BODY),
    ([p.HEADER, p.HEARTBEAT, b"\xff\xfe"], p.BAD_BODY),
    ([p.HEADER, p.HEARTBEAT, b"[1,2]"], p.BAD_BODY),
    ([p.HEADER, p.READY, b'{"role":"worker"}'], p.BAD_BODY),
    ([p.HEADER, p.PARTIAL, b'{"job_id":"j","attempt":"1","seq":0,"text":"a"}'], p.BAD_BODY),
    ([p.HEADER, p.PARTIAL, b'{"job_id":"j","attempt":true,"seq":0,"text":"a"}'], p.BAD_BODY),
    ([p.HEADER, p.HEARTBEAT, b"{" + b'"a":"' + b"x" * (p.MAX_BODY_BYTES) + b'"}'], p.TOO_LARGE),
])
def test_malformed_frames_raise_protocol_error_with_reason(frames, code):
    """Every malformed-frame class raises ProtocolError carrying its code and a readable reason."""
    with pytest.raises(p.ProtocolError) as err:
        p.decode(frames)
    assert err.value.code == code
    assert err.value.reason


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.binary(max_size=64), max_size=5))
def test_decode_never_raises_anything_but_protocol_error(frames):
    """Arbitrary bytes never crash the decoder: it decodes or raises ProtocolError."""
    try:
        p.decode(frames)
    except p.ProtocolError:
        pass


def test_encode_rejects_unknown_command():
    """Encoding an unknown command is a programming error, reported as ValueError."""
    with pytest.raises(ValueError):
        p.encode(b"\x99", {})


def test_event_round_trip_and_defects():
    """Events carry topic, seq and fields; a mismatched topic or bad body is a ProtocolError."""
    frames = p.encode_event("worker.lost", 42, {"worker_id": "w1", "reason": "heartbeat"})
    event = p.decode_event(frames)
    assert (event["topic"], event["seq"], event["worker_id"]) == ("worker.lost", 42, "w1")
    with pytest.raises(p.ProtocolError):
        p.decode_event([b"job.completed", frames[1]])
    with pytest.raises(p.ProtocolError):
        p.decode_event([b"x"])
    with pytest.raises(p.ProtocolError):
        p.decode_event([b"x", b"nope"])


def test_split_envelope_and_error_body():
    """ROUTER envelopes split into identity and frames; error bodies carry job fields only when given."""
    identity, frames = p.split_envelope([b"hive-a", *p.encode(p.REQUEST, REQUEST_BODY)])
    assert identity == b"hive-a" and p.decode(frames).body == REQUEST_BODY
    assert p.error_body("bad_body", "m") == {"code": "bad_body", "message": "m"}
    assert p.error_body("worker_lost", "m", "j", 2)["attempt"] == 2
