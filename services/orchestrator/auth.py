"""Bearer-key authentication: keys map to tenants, constant-time comparison, fingerprints only in logs."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging

import yaml

log = logging.getLogger("orchestrator.auth")


def fingerprint(key: str) -> str:
    """Return a short, non-reversible fingerprint of a key (safe to log)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def parse_keys(pairs: str) -> dict[str, str]:
    """Parse "tenant:key,tenant:key" into {tenant: key}."""
    keys: dict[str, str] = {}
    for item in pairs.split(","):
        item = item.strip()
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        if not sep or not tenant.strip() or not key.strip():
            raise SystemExit("config error: APIARY_API_KEYS entries must look like tenant:key")
        keys[tenant.strip()] = key.strip()
    return keys


def load_keys_file(path: str) -> dict[str, str]:
    """Read a YAML or JSON mapping tenant: key."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SystemExit(f"config error: APIARY_API_KEYS_FILE={path!r} unreadable: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        raise SystemExit(f"config error: APIARY_API_KEYS_FILE={path!r} is not valid YAML/JSON") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, (str, int)) for k, v in data.items()):
        raise SystemExit(f"config error: APIARY_API_KEYS_FILE={path!r} must map tenant names to keys")
    return {k: str(v) for k, v in data.items()}


class Authenticator:
    """Resolve an Authorization header to a tenant, comparing against every key in constant time."""

    def __init__(self, keys: dict[str, str], admin_tenants: set[str]):
        self._entries = [(tenant, key.encode()) for tenant, key in keys.items()]
        self.admin_tenants = admin_tenants
        log.info("api keys loaded", extra={"event": "auth.keys_loaded", "tenants": ",".join(sorted(keys)),
                                            "fingerprints": ",".join(fingerprint(k) for k in keys.values())})

    @classmethod
    def from_settings(cls, settings) -> "Authenticator":
        """Build from APIARY_API_KEYS merged with APIARY_API_KEYS_FILE."""
        keys = parse_keys(settings.api_keys)
        if settings.api_keys_file:
            keys.update(load_keys_file(settings.api_keys_file))
        admins = {t.strip() for t in settings.admin_tenants.split(",") if t.strip()}
        return cls(keys, admins)

    def tenant_for(self, header: bytes | None) -> str | None:
        """Return the tenant for an `Authorization: Bearer <key>` header value, or None."""
        if not header or header[:7].lower() != b"bearer ":
            return None
        presented = header[7:].strip()
        found = None
        for tenant, key in self._entries:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(presented, key):
                found = tenant
        return found

    def is_admin(self, tenant: str) -> bool:
        """Return True when the tenant may use /v1/admin/*."""
        return tenant in self.admin_tenants
