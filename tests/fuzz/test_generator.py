"""Unit tests of apiary_suite.fuzz: the seeded frame generator and the spec oracle (decode_spec) against the decoder."""
from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiary_suite import fuzz
from services import protocol as p
from services.protocol_malformed import CATALOGUE

IDS = ["fuzz-hive-0", "fuzz-hive-1", "fuzz-hive-2"]


def decoder_says(frames: list[bytes]):
    """What services.protocol.decode does with a message: (reason, command, body)."""
    try:
        msg = p.decode(frames)
    except p.ProtocolError as exc:
        return exc.code, None, None
    return None, msg.command, msg.body


def cases(seed: int, n: int, role: str = "hive") -> list[fuzz.Case]:
    gen = fuzz.FrameGenerator(seed, role, IDS)
    return [gen.case() for _ in range(n)]


def test_a_seed_replays_the_same_cases_and_another_seed_does_not():
    assert cases(42, 2000) == cases(42, 2000)
    assert cases(42, 200) != cases(43, 200)


@pytest.mark.parametrize("role", ["hive", "worker"])
def test_every_class_and_every_rejection_reason_is_generated(role):
    made = cases(7, 20000, role)
    by_class = collections.Counter(c.cls for c in made)
    assert set(by_class) == set(fuzz.CLASSES)
    assert by_class["mutated"] > by_class["valid"] > by_class["oversized"] > 0  # weights 38 / 20 / 2
    reasons = collections.Counter(fuzz.decode_spec(m)[0] for c in made for m in c.messages)
    assert set(reasons) == {None, p.BAD_FRAME, p.BAD_PROTOCOL, p.UNSUPPORTED_VERSION, p.UNKNOWN_COMMAND,
                            p.BAD_BODY, p.TOO_LARGE}
    assert reasons[None] > 0.3 * sum(reasons.values())  # a good share decodes: the state machine is reached
    ops = {c.op for c in made}
    assert {"bitflip", "msgpack_body", "deep_nesting", "body_over", "body_at_limit", "before_ready",
            "ready_twice", "disconnect_then", "final_unknown_job", "wrong_direction"} <= ops


def test_messages_are_frame_lists_and_oversized_bodies_pass_the_limit():
    for case in cases(3, 5000):
        assert 0 <= case.sock < len(IDS) and case.messages
        for message in case.messages:
            assert message and all(isinstance(f, bytes) for f in message)
        if case.op == "body_over":
            assert len(case.messages[0][2]) > p.MAX_BODY_BYTES
            assert fuzz.decode_spec(case.messages[0])[0] == p.TOO_LARGE
        if case.op == "body_at_limit":  # exactly the limit: still valid JSON, so it decodes
            assert len(case.messages[0][2]) == p.MAX_BODY_BYTES
            assert fuzz.decode_spec(case.messages[0])[0] is None


def test_peers_send_in_runs():
    made = cases(5, 5000)
    switches = sum(a.sock != b.sock for a, b in zip(made, made[1:]))
    assert 0 < switches < 250  # about 2 % of cases change peer


def test_valid_messages_decode_and_follow_the_role():
    gen = fuzz.FrameGenerator(1, "worker", ["fuzz-hw-0"])
    for _ in range(500):
        reason, command, body = fuzz.decode_spec(gen.valid(0))
        assert reason is None and command in fuzz.UP["worker"]
        if command == p.READY:
            assert body["role"] == "worker"


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="role must be"):
        fuzz.FrameGenerator(1, "orchestrator", IDS)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_the_oracle_rejects_each_catalogue_entry_with_its_code(name):
    assert fuzz.decode_spec(list(CATALOGUE[name].frames))[0] == CATALOGUE[name].code


def test_the_oracle_returns_command_and_body_of_a_valid_message():
    assert fuzz.decode_spec(p.encode(p.FINAL, {"job_id": "j", "attempt": 1, "tokens": 2})) == \
        (None, p.FINAL, {"job_id": "j", "attempt": 1, "tokens": 2})
    assert fuzz.decode_spec(p.encode(p.FINAL, {"job_id": "j", "attempt": True, "tokens": 2}))[0] == p.BAD_BODY
    assert fuzz.decode_spec([p.HEADER, b"\x0e", b"{}"])[0] == p.UNKNOWN_COMMAND  # unknown: one past SHUTDOWN


@pytest.mark.parametrize("role", ["hive", "worker"])
def test_the_oracle_agrees_with_the_decoder_on_generated_messages(role):
    for case in cases(11, 20000, role):
        for message in case.messages:
            assert fuzz.decode_spec(message) == decoder_says(message), (case.cls, case.op, message[:3])


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)
FIELDS = sorted({f.split(":")[0] for spec in fuzz.SPEC_FIELDS.values() for f in spec.split()})
BODIES = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=9).map(p.dumps) | st.binary(max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=12), min_size=0, max_size=5))
def test_the_oracle_agrees_with_the_decoder_on_any_frames(frames):
    assert fuzz.decode_spec(frames) == decoder_says(frames)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from([p.HEADER, b"AMDP02", b"AMDP", b"XMDP01"]), st.sampled_from(list(p.COMMAND_NAMES) + [b"\x00"]),
       BODIES)
def test_the_oracle_agrees_with_the_decoder_on_structured_messages(header, command, body):
    assert fuzz.decode_spec([header, command, body]) == decoder_says([header, command, body])
