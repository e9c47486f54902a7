"""The run's secrets directory <run_dir>/secrets/ (mode 0700), the one place that creates it: the
orchestrator's bearer keys file `api-keys` (mode 0644, so the services' uid 10001 reads it through the
read-only bind mount compose gives it; never an image layer or an environment variable), and later the
CURVE key set `curve/<role>/` (services/curve.py; each service mounts only its role's directory). Teardown
and the reaper remove it: no key outlives its run.

    python -m apiary_suite.secrets DIR     # a CURVE key set in DIR/curve for a manual `docker compose up`
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from services import protocol as p

SECRETS_DIR = "secrets"
API_KEYS_FILE = "api-keys"            # compose mounts it at /run/secrets/apiary-api-keys (APIARY_API_KEYS_FILE)
CURVE_DIR = "curve"                   # compose mounts curve/<role> at /run/secrets/curve (APIARY_CURVE_DIR)
DIR_MODE, FILE_MODE = 0o700, 0o644


def secrets_dir(run_dir: str | os.PathLike) -> Path:
    """<run_dir>/secrets (whether or not it exists)."""
    return Path(run_dir) / SECRETS_DIR


def check_keys(api_keys: dict[str, str]) -> None:
    """ValueError unless every tenant and key is a non-empty string without surrounding blanks."""
    if not api_keys:
        raise ValueError("no API keys: the orchestrator would accept no tenant")
    for tenant, key in api_keys.items():
        for what, text in (("tenant", tenant), (f"key of {tenant!r}", key)):
            if not isinstance(text, str) or not text or text != text.strip():
                raise ValueError(f"API keys: the {what} must be a non-empty string without surrounding blanks")


def write_file(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Write text to path through a temporary file in the same directory, then rename (mode set explicitly)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)           # the umask does not decide what the container can read
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_run_secrets(run_dir: str | os.PathLike, api_keys: dict[str, str]) -> Path:
    """Create <run_dir>/secrets/ (0700) with `api-keys` ({tenant: key} as JSON, which the orchestrator
    reads as YAML; 0644); returns the directory. Writing again replaces the keys file."""
    check_keys(api_keys)
    path = secrets_dir(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(DIR_MODE)
    write_file(path / API_KEYS_FILE, json.dumps(api_keys, indent=1, sort_keys=True) + "\n")
    write_curve_keys(path)
    return path


def write_curve_keys(path: Path) -> Path:
    """Make the CURVE key set in path/curve once (kept across a stack's recreate); returns its root.

    Made also with APIARY_CURVE=off, so compose's bind sources exist and docker creates no root-owned dirs."""
    root = path / CURVE_DIR
    if not (root / "client" / "self.key_secret").is_file():
        shutil.rmtree(root, ignore_errors=True)
        p.make_keyset(root)
    return root


def curve_root(run_dir: str | os.PathLike | None) -> Path | None:
    """The run's CURVE key set, or None when there is none or APIARY_CURVE=off (the harness then holds no key)."""
    if run_dir is None or not p.curve_enabled():
        return None
    root = secrets_dir(run_dir) / CURVE_DIR
    return root if (root / "client" / "self.key_secret").is_file() else None


def read_api_keys(run_dir: str | os.PathLike) -> dict[str, str] | None:
    """The {tenant: key} that write_run_secrets wrote for the run, or None when there is none."""
    try:
        return json.loads((secrets_dir(run_dir) / API_KEYS_FILE).read_text())
    except FileNotFoundError:
        return None


def remove_run_secrets(run_dir: str | os.PathLike) -> bool:
    """Delete <run_dir>/secrets and everything in it; True when it is gone (or never was)."""
    path = secrets_dir(run_dir)
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def main(argv: list[str] | None = None) -> int:
    """Write a CURVE key set into DIR/curve (for a manual compose run); exit 2 naming a bad DIR."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m apiary_suite.secrets DIR   (writes DIR/curve/<role>/ key directories)", file=sys.stderr)
        return 2
    target = Path(args[0])
    if target.exists() and not target.is_dir():
        print(f"error: {target} exists and is not a directory", file=sys.stderr)
        return 2
    target.mkdir(parents=True, exist_ok=True)
    root = write_curve_keys(target)
    print(f"CURVE key set in {root} (roles: {', '.join(sorted(d.name for d in root.iterdir()))}); "
          f"compose reads it through APIARY_SECRETS_DIR={target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
