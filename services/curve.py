"""CURVE keys for every ZeroMQ TCP link (RFC 26), their files, and who may talk to whom (ZAP domains, RFC 27).

The security half of the wire contract; ``services.protocol`` re-exports it for the harness.
A key set is one directory per role, made per stack (per run for test stacks), never baked into an image:

    <root>/orchestrator/  self.key self.key_secret  allowed/router/{hive,client}.key  allowed/events/client.key
    <root>/hive/          self.key self.key_secret  servers/orchestrator.key  allowed/router/{worker,client}.key
    <root>/worker/        self.key self.key_secret  servers/hive.key
    <root>/client/        self.key self.key_secret  servers/{orchestrator,hive}.key

Files are pyzmq's ZPL certificates (``zmq.auth``). A service is given only its own role's directory.
``APIARY_CURVE=off`` turns CURVE off for debugging; otherwise ``APIARY_CURVE_DIR`` must name the directory.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

ROLES = ("orchestrator", "hive", "worker", "client")
# (server role, link) -> client roles whose public keys that server accepts
GRANTS = {("orchestrator", "router"): ("hive", "client"), ("orchestrator", "events"): ("client",),
          ("hive", "router"): ("worker", "client")}
CONNECTS = {"hive": ("orchestrator",), "worker": ("hive",), "client": ("orchestrator", "hive"), "orchestrator": ()}
CURVE_ENV, DIR_ENV = "APIARY_CURVE", "APIARY_CURVE_DIR"


class CurveError(SystemExit):
    """CURVE cannot be set up (exits a service with a message naming the file or variable)."""


@dataclass(frozen=True)
class CurveKeys:
    """One role's key pair, the public keys of the servers it connects to, and who its servers accept."""

    role: str
    public: bytes
    secret: bytes
    servers: dict[str, bytes] = field(default_factory=dict)
    allowed: dict[str, frozenset[bytes]] = field(default_factory=dict)

    def server_key(self, server_role: str) -> bytes:
        """Return the public key of a server role, or fail naming the missing file."""
        try:
            return self.servers[server_role]
        except KeyError:
            raise CurveError(f"CURVE: no servers/{server_role}.key in the {self.role} key directory") from None

    def stranger(self) -> "CurveKeys":
        """Return a fresh key pair nobody listed, that knows this set's server keys (a rogue with a key)."""
        public, secret = zmq.curve_keypair()
        return CurveKeys("stranger", public, secret, dict(self.servers))


def require_curve() -> None:
    """Fail with a clear message when libzmq was built without CURVE."""
    if not zmq.has("curve"):
        raise CurveError(f"CURVE is on but this libzmq ({zmq.zmq_version()}) has no CURVE support "
                         f"(zmq.has('curve') is False); install a pyzmq wheel with libsodium or set {CURVE_ENV}=off")


def curve_enabled() -> bool:
    """Return False only when APIARY_CURVE says off (CURVE is on by default)."""
    raw = os.environ.get(CURVE_ENV, "on").strip().lower() or "on"
    if raw in ("on", "1", "true", "yes"):
        return True
    if raw in ("off", "0", "false", "no"):
        return False
    raise CurveError(f"config error: {CURVE_ENV}={raw!r} must be on or off")


def keys_from_env(role: str) -> CurveKeys | None:
    """Return this service's keys from APIARY_CURVE_DIR, None when APIARY_CURVE=off."""
    if not curve_enabled():
        return None
    require_curve()
    directory = os.environ.get(DIR_ENV, "")
    if not directory:
        raise CurveError(f"config error: CURVE is on (the default) but {DIR_ENV} is not set: point it at this "
                         f"{role}'s key directory (python -m apiary_suite.secrets DIR writes a key set), "
                         f"or set {CURVE_ENV}=off for debugging")
    return load_keys(directory, role)


def _public_of(path: Path) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveError(f"CURVE: cannot read key file {path}: {exc}") from None
    return public


def load_keys(directory: str | os.PathLike, role: str) -> CurveKeys:
    """Read one role's key directory; a missing or unreadable file exits naming it."""
    root = Path(directory)
    secret_file = root / "self.key_secret"
    if not secret_file.is_file():
        raise CurveError(f"CURVE: {secret_file} does not exist (is {DIR_ENV} the {role} key directory?)")
    try:
        public, secret = zmq.auth.load_certificate(str(secret_file))
    except (OSError, ValueError) as exc:
        raise CurveError(f"CURVE: cannot read key file {secret_file}: {exc}") from None
    if not secret:
        raise CurveError(f"CURVE: {secret_file} holds no secret key")
    servers = {f.stem: _public_of(f) for f in sorted((root / "servers").glob("*.key"))}
    allowed = {d.name: frozenset(_public_of(f) for f in sorted(d.glob("*.key")))
               for d in sorted((root / "allowed").glob("*")) if d.is_dir()}
    return CurveKeys(role, public, secret, servers, allowed)


def make_keyset(root: str | os.PathLike) -> Path:
    """Create a fresh key set (one directory per role) under root and return root."""
    root = Path(root)
    scratch = Path(tempfile.mkdtemp(prefix="apiary-curve-"))
    try:
        for role in ROLES:
            zmq.auth.create_certificates(str(scratch), role)
        for role in ROLES:
            home = root / role
            (home / "servers").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(scratch / f"{role}.key", home / "self.key")
            shutil.copyfile(scratch / f"{role}.key_secret", home / "self.key_secret")
            for server in CONNECTS[role]:
                shutil.copyfile(scratch / f"{server}.key", home / "servers" / f"{server}.key")
        for (server, link), clients in GRANTS.items():
            allowed = root / server / "allowed" / link
            allowed.mkdir(parents=True, exist_ok=True)
            for client in clients:
                shutil.copyfile(scratch / f"{client}.key", allowed / f"{client}.key")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for path in [root, *root.rglob("*")]:  # readable by the services' non-root user through a bind mount
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def secure_server(sock: zmq.Socket, keys: CurveKeys, link: str) -> None:
    """Make sock a CURVE server whose peers are judged by the ZAP domain ``<role>.<link>`` (before bind)."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.ZAP_DOMAIN, f"{keys.role}.{link}".encode())
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no ZAP handler bound: refuse, never admit everyone


def secure_client(sock: zmq.Socket, keys: CurveKeys, server_role: str) -> None:
    """Make sock a CURVE client of a server role (before connect)."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_key(server_role))
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
