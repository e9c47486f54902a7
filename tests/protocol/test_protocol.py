"""AMDP/1 encode/decode: round trips, every entry of the malformed-frame catalogue, events, the mock model."""
import pytest
from hypothesis import given, settings, strategies as st

from services import protocol as p
from services.protocol_malformed import CATALOGUE, SWAPS, frames as malformed

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


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_catalogue_entry_gets_its_error_code_from_the_decoder(name):
    """Every entry of the malformed-frame catalogue raises ProtocolError carrying its code and a readable reason."""
    entry = CATALOGUE[name]
    with pytest.raises(p.ProtocolError) as err:
        p.decode(malformed(name))
    assert err.value.code == entry.code
    assert err.value.reason and entry.rule


VALID = [p.encode(p.HEARTBEAT), p.encode(p.READY, {"role": "hive", "id": "h"}),
         p.encode(p.FINAL, {"job_id": "j", "attempt": 1, "tokens": 2})]


@pytest.mark.parametrize("op", sorted(SWAPS))
def test_every_swapped_frame_value_gets_its_error_code_from_the_decoder(op):
    """A SWAPS value in place of its frame of a valid message is rejected with the swap's code."""
    swap = SWAPS[op]
    for message in VALID:
        p.decode(message)
        for value in swap.values:
            frames = list(message)
            frames[swap.frame] = value
            with pytest.raises(p.ProtocolError) as err:
                p.decode(frames)
            assert err.value.code == swap.code, (op, value, message[1])


def test_an_unknown_catalogue_name_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="unknown malformed frame 'bad_mood'; choose from bad_protocol, "):
        malformed("bad_mood")


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
