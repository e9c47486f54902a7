"""Deliberately malformed frames for the `malformed_frame` fault (each breaks exactly one rule of AMDP/1)."""
from __future__ import annotations

from services import protocol as p


def malformed_frames(kind: str) -> list[bytes]:
    """Return the frames of one malformed message of the given kind."""
    if kind == "bad_version":
        return [p.PROTOCOL + b"99", p.HEARTBEAT, b"{}"]
    if kind == "unknown_command":
        return [p.HEADER, b"\x7f", b"{}"]
    if kind == "bad_body":
        return [p.HEADER, p.CAPACITY, b"{not json"]
    if kind == "wrong_frame_count":
        return [p.HEADER, p.HEARTBEAT]
    if kind == "too_large":
        return [p.HEADER, p.HEARTBEAT, b'{"pad":"' + b"x" * (p.MAX_BODY_BYTES + 16) + b'"}']
    raise ValueError(f"unknown malformed frame kind {kind!r}")
