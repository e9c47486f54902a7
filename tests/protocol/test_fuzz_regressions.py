"""Regressions found while fuzzing the decoder: the stdlib JSON fallback (no orjson) must not raise past decode."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services import protocol as p

ROOT = Path(__file__).resolve().parents[2]
FALLBACK = """
import sys
sys.modules["orjson"] = None  # import fails: services.protocol falls back to the stdlib json
from services import protocol as p
assert p._json.__name__ == "json"
deep = b'{"x":' + b"[" * 100000 + b"]" * 100000 + b"}"
try:
    p.decode([p.HEADER, p.READY, deep])
except p.ProtocolError as exc:
    print(exc.code)
"""


def test_the_stdlib_fallback_rejects_a_deeply_nested_body_as_bad_body():
    """json.loads raised RecursionError, which decode let through (a handler traceback per frame)."""
    out = subprocess.run([sys.executable, "-c", FALLBACK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == p.BAD_BODY


def test_orjson_rejects_the_same_body_as_bad_body():
    deep = b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    try:
        p.decode([p.HEADER, p.READY, deep])
    except p.ProtocolError as exc:
        assert exc.code == p.BAD_BODY
    else:
        raise AssertionError("a 5000-deep body decoded")


def test_slots_have_a_documented_upper_bound():
    assert p.MAX_SLOTS == 2 ** 31 - 1
