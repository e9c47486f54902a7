"""The malformed-frame catalogue of AMDP/1: each entry breaks one rule of services.protocol.decode and names the
ERROR code the receiver must answer (and count in apiary_protocol_errors_total).

Rogue peers (apiary_suite/rogue.py), the mock worker's `malformed_frame` fault, the frame fuzzer (apiary_suite/fuzz.py)
and the tests take their bad frames from here; tests/protocol checks every entry against the real decoder.
"""
from __future__ import annotations

from typing import NamedTuple

from services import protocol as p


class Malformed(NamedTuple):
    """One malformed message: its frames as a DEALER sends them, the ERROR code it earns, the rule it breaks."""

    frames: tuple[bytes, ...]
    code: str
    rule: str


_READY = p.dumps({"role": "hive", "id": "rogue"})
_PAD = b'{"pad":"' + b"x" * (p.MAX_BODY_BYTES + 16) + b'"}'  # a body just over the limit

CATALOGUE: dict[str, Malformed] = {
    "bad_protocol": Malformed((b"XMDP01", p.READY, _READY), p.BAD_PROTOCOL, "the header starts with AMDP"),
    "bad_version": Malformed((p.PROTOCOL + b"99", p.READY, _READY), p.UNSUPPORTED_VERSION,
                             "the header's version is 01"),
    "unknown_command": Malformed((p.HEADER, b"\x7f", b"{}"), p.UNKNOWN_COMMAND, "the command is a known byte"),
    "empty_command": Malformed((p.HEADER, b"", b"{}"), p.UNKNOWN_COMMAND, "the command frame is one byte"),
    "bad_json": Malformed((p.HEADER, p.READY, b"{not json"), p.BAD_BODY, "a READY body is JSON"),
    "bad_body": Malformed((p.HEADER, p.CAPACITY, b"{not json"), p.BAD_BODY, "a CAPACITY body is JSON"),
    "bad_utf8": Malformed((p.HEADER, p.HEARTBEAT, b"\xff\xfe"), p.BAD_BODY, "a body is UTF-8 JSON"),
    "not_object": Malformed((p.HEADER, p.READY, b"[1,2,3]"), p.BAD_BODY, "a body is a JSON object"),
    "missing_field": Malformed((p.HEADER, p.READY, p.dumps({"role": "hive"})), p.BAD_BODY,
                               "a READY body has every required field (here `id`)"),
    "string_integer": Malformed((p.HEADER, p.PARTIAL, b'{"job_id":"j","attempt":"1","seq":0,"text":"a"}'),
                                p.BAD_BODY, "an integer field is a JSON integer, not a string"),
    "bool_integer": Malformed((p.HEADER, p.PARTIAL, b'{"job_id":"j","attempt":true,"seq":0,"text":"a"}'),
                              p.BAD_BODY, "an integer field is a JSON integer, not a boolean"),
    "wrong_frame_count": Malformed((p.HEADER, p.READY), p.BAD_FRAME, "a message has 3 frames, not 2"),
    "extra_frame": Malformed((p.HEADER, p.READY, b"{}", b"extra"), p.BAD_FRAME, "a message has 3 frames, not 4"),
    "no_frames": Malformed((), p.BAD_FRAME, "a message has 3 frames, not none (a DEALER cannot send it)"),
    "too_large": Malformed((p.HEADER, p.READY, _PAD), p.TOO_LARGE, "a body is at most MAX_BODY_BYTES"),
}


class Swap(NamedTuple):
    """Bad values for one frame of an otherwise valid message: each earns `code` (the fuzzer's mutations)."""

    frame: int
    values: tuple[bytes, ...]
    code: str


SWAPS: dict[str, Swap] = {
    "wrong_version": Swap(0, (b"AMDP02", b"AMDP1", b"AMDP", b"AMDP01\x00", b"AMDP10", b"AMDP99"),
                          p.UNSUPPORTED_VERSION),
    "bad_protocol": Swap(0, (b"MDPW01", b"amdp01", b"", b"AMD", b"\x00AMDP01"), p.BAD_PROTOCOL),
    "unknown_command": Swap(1, (b"\x00", b"\x0e", b"\x7f", b"\xff", b"", b"\x01\x01"), p.UNKNOWN_COMMAND),
    "not_object": Swap(2, (b"[1,2,3]", b'"x"', b"42", b"null", b"true"), p.BAD_BODY),
}


def frames(name: str) -> list[bytes]:
    """Return the frames of catalogue entry `name`, raising ValueError naming the choices for an unknown one."""
    entry = CATALOGUE.get(name)
    if entry is None:
        raise ValueError(f"unknown malformed frame {name!r}; choose from {', '.join(CATALOGUE)}")
    return list(entry.frames)
