"""Read service settings from environment variables; a bad value exits with a message naming the variable."""
from __future__ import annotations

import os
import socket


class ConfigError(SystemExit):
    """A configuration value that cannot be used (exits the service with its message)."""


def env_str(name: str, default: str) -> str:
    """Return the env var `name` or its default."""
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    """Return the env var `name` as an int, exiting with a clear message when it is not one."""
    return _env_number(name, default, minimum, int, "an integer")


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    """Return the env var `name` as a float, exiting with a clear message when it is not one."""
    return _env_number(name, default, minimum, float, "a number")


def _env_number(name: str, default, minimum, cast, what: str):
    raw = env_str(name, str(default))
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"config error: {name}={raw!r} is not {what}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"config error: {name}={value} must be >= {minimum}")
    return value


def env_bool(name: str, default: bool) -> bool:
    """Return the env var `name` as a bool (1/true/yes/on vs 0/false/no/off)."""
    raw = env_str(name, "1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"config error: {name}={raw!r} is not a boolean (use true or false)")


def hostname() -> str:
    """Return this host's name (the default identity of hives and workers)."""
    return socket.gethostname()
