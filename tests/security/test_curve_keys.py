"""CURVE key sets and their configuration errors: each names the file or the variable."""
from __future__ import annotations

import stat

import pytest
import zmq

from services import curve
from services.curve import CurveError, keys_from_env, load_keys, make_keyset


def test_a_key_set_gives_each_role_only_what_it_needs(tmp_path):
    root = make_keyset(tmp_path / "keys")
    keys = {role: load_keys(root / role, role) for role in curve.ROLES}
    assert len({k.public for k in keys.values()}) == 4 and all(len(k.secret) == 40 for k in keys.values())
    assert keys["orchestrator"].allowed == {"router": {keys["hive"].public, keys["client"].public},
                                            "events": {keys["client"].public}}
    assert keys["hive"].allowed == {"router": {keys["worker"].public, keys["client"].public}}
    assert keys["worker"].servers == {"hive": keys["hive"].public} and not keys["worker"].allowed
    assert not list((root / "worker").rglob("orchestrator.key_secret")), "a worker must not hold another role's secret"
    assert stat.S_IMODE((root / "hive" / "self.key_secret").stat().st_mode) == 0o644  # readable by uid 10001 via the mount


def test_missing_directory_and_files_name_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("APIARY_CURVE", raising=False)
    monkeypatch.delenv("APIARY_CURVE_DIR", raising=False)
    with pytest.raises(CurveError, match="APIARY_CURVE_DIR is not set.*APIARY_CURVE=off"):
        keys_from_env("hive")
    monkeypatch.setenv("APIARY_CURVE_DIR", str(tmp_path))
    with pytest.raises(CurveError, match=f"{tmp_path}/self.key_secret does not exist"):
        keys_from_env("hive")
    root = make_keyset(tmp_path / "k")
    (root / "worker" / "servers" / "hive.key").write_text("garbage")
    with pytest.raises(CurveError, match="servers/hive.key"):
        load_keys(root / "worker", "worker")


def test_curve_off_and_bad_values(monkeypatch):
    monkeypatch.setenv("APIARY_CURVE", "off")
    assert keys_from_env("orchestrator") is None
    monkeypatch.setenv("APIARY_CURVE", "maybe")
    with pytest.raises(CurveError, match="APIARY_CURVE='maybe' must be on or off"):
        keys_from_env("orchestrator")


def test_a_libzmq_without_curve_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("APIARY_CURVE", "on")
    monkeypatch.setenv("APIARY_CURVE_DIR", str(make_keyset(tmp_path) / "hive"))
    monkeypatch.setattr(zmq, "has", lambda capability: capability != "curve")
    with pytest.raises(CurveError, match=r"no CURVE support \(zmq.has\('curve'\) is False\)"):
        keys_from_env("hive")


def test_a_client_without_the_server_key_is_named(tmp_path):
    keys = load_keys(make_keyset(tmp_path) / "worker", "worker")
    with pytest.raises(CurveError, match="no servers/orchestrator.key in the worker key directory"):
        keys.server_key("orchestrator")
