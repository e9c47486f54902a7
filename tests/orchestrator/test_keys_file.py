"""APIARY_API_KEYS_FILE alone replaces the laptop default keys (a container given a keys file must not
also accept `key-a`); with APIARY_API_KEYS too, the file is merged over the listed keys."""
from services.orchestrator.auth import Authenticator
from services.orchestrator.config import Settings


def keys_of(monkeypatch, tmp_path, env_keys: str | None) -> Authenticator:
    path = tmp_path / "api-keys"
    path.write_text("admin: file-admin\ntenant-z: file-z\n")
    monkeypatch.setenv("APIARY_API_KEYS_FILE", str(path))
    monkeypatch.setenv("APIARY_CURVE", "off")   # bearer keys only; CURVE has its own tests (tests/security/)
    if env_keys is None:
        monkeypatch.delenv("APIARY_API_KEYS", raising=False)
    else:
        monkeypatch.setenv("APIARY_API_KEYS", env_keys)
    return Authenticator.from_settings(Settings.from_env())


def test_a_keys_file_alone_accepts_only_its_keys(monkeypatch, tmp_path):
    auth = keys_of(monkeypatch, tmp_path, None)
    assert auth.tenant_for(b"Bearer file-z") == "tenant-z" and auth.tenant_for(b"Bearer file-admin") == "admin"
    assert auth.tenant_for(b"Bearer key-a") is None and auth.tenant_for(b"Bearer key-admin") is None


def test_a_keys_file_is_merged_over_listed_keys(monkeypatch, tmp_path):
    auth = keys_of(monkeypatch, tmp_path, "tenant-a:key-a,admin:env-admin")
    assert auth.tenant_for(b"Bearer key-a") == "tenant-a"
    assert auth.tenant_for(b"Bearer file-admin") == "admin" and auth.tenant_for(b"Bearer env-admin") is None


def test_without_a_file_the_laptop_defaults_hold(monkeypatch):
    monkeypatch.delenv("APIARY_API_KEYS_FILE", raising=False)
    monkeypatch.delenv("APIARY_API_KEYS", raising=False)
    monkeypatch.setenv("APIARY_CURVE", "off")
    assert Authenticator.from_settings(Settings.from_env()).tenant_for(b"Bearer key-a") == "tenant-a"
