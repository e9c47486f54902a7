"""Build transports from configuration mappings or YAML files, rejecting bad keys with clear errors.

Keys (see docs/zeromq.md for the full reference)::

    transport: zeromq | pipe                       # required
    pattern:   pub_sub | push_pull | req_rep | router_dealer   # required for zeromq
    role:      publisher|subscriber, push|pull, req|rep, router|dealer (matching the pattern)
    protocol:  tcp | ipc | inproc                  # zeromq; default: from address, else tcp
    address:   tcp://127.0.0.1:5555 | ipc:///path | inproc://name | pipe://stdio | pipe://fd/R/W
    mode:      bind | connect                      # default: publisher/push/rep/router bind
    name:      endpoint name used to derive an ipc/inproc address when address is absent
    zeromq:    {TransportOptions field: value}     # zeromq only
    pipe:      {framing: line|length, line_encoding: base64|raw, command: [argv...],
                max_message_size: N, receive_timeout_ms: N}   # pipe only
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

from .addresses import PROTOCOLS, check_address, local_address, protocol_of
from .base import ConfigError, Transport, TransportOptions
from .pipe import FRAMINGS, LINE_ENCODINGS, PipeTransport

TOP_KEYS = ("transport", "pattern", "role", "protocol", "address", "mode", "name", "zeromq", "pipe")
TRANSPORTS = ("zeromq", "pipe")
ROLES = {
    "pub_sub": ("publisher", "subscriber"),
    "push_pull": ("push", "pull"),
    "req_rep": ("req", "rep"),
    "router_dealer": ("router", "dealer"),
}
CLASSES = {
    "publisher": ("zeromq", "PublisherTransport"), "subscriber": ("zeromq", "SubscriberTransport"),
    "push": ("zeromq", "PushTransport"), "pull": ("zeromq", "PullTransport"),
    "req": ("reqrep", "RequestTransport"), "rep": ("reqrep", "ReplyTransport"),
    "router": ("reqrep", "RouterTransport"), "dealer": ("reqrep", "DealerTransport"),
}
BINDING_ROLES = ("publisher", "push", "rep", "router")
MODES = ("bind", "connect")
PIPE_KEYS = ("framing", "line_encoding", "command", "max_message_size", "receive_timeout_ms")


@dataclasses.dataclass(frozen=True)
class TransportSpec:
    """A validated transport configuration."""

    transport: str
    pattern: str
    role: str
    mode: str
    protocol: str | None
    address: str | None
    options: TransportOptions
    framing: str = "length"
    line_encoding: str = "base64"
    command: tuple[str, ...] | None = None


def _choice(config: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: Any = None) -> Any:
    """Return config[key] if it is one of allowed (or default when absent); ConfigError otherwise."""
    value = config.get(key, default)
    if value is None or value not in allowed:
        shown = "missing" if value is None else repr(value)
        raise ConfigError(f"key {key!r}: {shown} is not allowed; allowed values: {', '.join(allowed)}")
    return value


def _require_zmq() -> None:
    """Raise ImportError with the install command if pyzmq is not importable."""
    try:
        importlib.import_module("zmq")
    except ImportError as exc:
        raise ImportError("transport 'zeromq' needs pyzmq: pip install pyzmq") from exc


class TransportFactory:
    """Create transports from configuration (mapping or YAML file)."""

    @staticmethod
    def parse(config: Mapping[str, Any], *, platform: str | None = None) -> TransportSpec:
        """Validate config and return a TransportSpec; ConfigError names the bad key and the allowed values."""
        if not isinstance(config, Mapping):
            raise ConfigError(f"transport configuration must be a mapping, got {type(config).__name__}")
        for key in config:
            if key not in TOP_KEYS:
                raise ConfigError(f"unknown key {key!r}; allowed keys: {', '.join(TOP_KEYS)}")
        transport = _choice(config, "transport", TRANSPORTS)
        if transport == "pipe":
            return TransportFactory._parse_pipe(config)
        _require_zmq()
        if "pipe" in config:
            raise ConfigError("key 'pipe' is only allowed with transport 'pipe'; use 'zeromq' for socket options")
        pattern = _choice(config, "pattern", tuple(ROLES))
        role = _choice(config, "role", ROLES[pattern])
        mode = _choice(config, "mode", MODES, "bind" if role in BINDING_ROLES else "connect")
        zconf = config.get("zeromq") or {}
        if not isinstance(zconf, Mapping):
            raise ConfigError(f"key 'zeromq' must be a mapping of options, got {zconf!r}")
        options = TransportOptions.from_mapping(zconf, where="zeromq")
        address = config.get("address")
        if address is not None and not isinstance(address, str):
            raise ConfigError(f"key 'address' must be a string, got {address!r}")
        protocol = config.get("protocol") or (address.split("://")[0] if address and "://" in address else "tcp")
        _choice({"protocol": protocol}, "protocol", PROTOCOLS)
        name = str(config.get("name", f"{pattern}-{ROLES[pattern][0]}"))
        try:
            if address is None:
                if mode == "connect" and protocol == "tcp":
                    raise ConfigError("key 'address' is required to connect over tcp (e.g. tcp://127.0.0.1:5555)")
                address = local_address(protocol, name, platform=platform)
            elif protocol_of(address) != protocol:
                raise ConfigError(f"key 'address': {address!r} does not match protocol {protocol!r}")
            check_address(address, bind=mode == "bind", platform=platform)
        except ConfigError:
            raise
        except ValueError as exc:
            key = "protocol" if protocol == "ipc" and "Windows" in str(exc) else "address"
            raise ConfigError(f"key {key!r}: {exc}") from exc
        return TransportSpec("zeromq", pattern, role, mode, protocol, address, options)

    @staticmethod
    def _parse_pipe(config: Mapping[str, Any]) -> TransportSpec:
        """Validate a pipe configuration."""
        for key in ("zeromq", "protocol"):
            if key in config:
                raise ConfigError(f"key {key!r} is not allowed with transport 'pipe' (pipes have no sockets)")
        pattern = config.get("pattern", "push_pull")
        if pattern != "push_pull":
            raise ConfigError(f"key 'pattern': {pattern!r} is not possible with transport 'pipe' "
                              "(a pipe is one writer to one reader); allowed values: push_pull")
        role = _choice(config, "role", ("push", "pull"), "push")
        pconf = config.get("pipe") or {}
        if not isinstance(pconf, Mapping):
            raise ConfigError(f"key 'pipe' must be a mapping, got {pconf!r}")
        for key in pconf:
            if key not in PIPE_KEYS:
                raise ConfigError(f"unknown key pipe.{key!r}; allowed: {', '.join(PIPE_KEYS)}")
        framing = _choice(pconf, "framing", FRAMINGS, "length")
        encoding = _choice(pconf, "line_encoding", LINE_ENCODINGS, "base64")
        command = pconf.get("command")
        if command is not None and (not isinstance(command, (list, tuple)) or not command
                                    or not all(isinstance(a, str) for a in command)):
            raise ConfigError(f"key 'pipe.command' must be a non-empty list of strings, got {command!r}")
        options = TransportOptions.from_mapping(
            {k: pconf[k] for k in ("max_message_size", "receive_timeout_ms") if k in pconf}, where="pipe")
        address = config.get("address", None if command else "pipe://stdio")
        return TransportSpec("pipe", "push_pull", role, "connect", None, address, options,
                             framing, encoding, tuple(command) if command else None)

    @staticmethod
    def create(spec: TransportSpec, *, address: str | None = None) -> Transport:
        """Instantiate spec and bind or connect it (address overrides spec.address)."""
        address = address or spec.address
        if spec.transport == "pipe":
            kwargs = dict(framing=spec.framing, line_encoding=spec.line_encoding, options=spec.options)
            if spec.command:
                return PipeTransport.spawn(spec.command, **kwargs)
            pipe = PipeTransport(**kwargs)
            pipe.connect(address or "pipe://stdio")
            return pipe
        module, cls_name = CLASSES[spec.role]
        cls = getattr(importlib.import_module(f"{__package__}.{module}"), cls_name)
        transport = cls(spec.options)
        try:
            (transport.bind if spec.mode == "bind" else transport.connect)(address)
        except BaseException:
            transport.close(0)
            raise
        return transport

    @staticmethod
    def from_config(config: Mapping[str, Any], *, platform: str | None = None) -> Transport:
        """Validate config, create the transport and bind or connect it."""
        return TransportFactory.create(TransportFactory.parse(config, platform=platform))

    @staticmethod
    def load_yaml(path: str) -> TransportSpec:
        """Read and validate a YAML transport configuration; errors name the file."""
        import yaml

        try:
            with open(path, encoding="utf-8") as handle:
                config = yaml.safe_load(handle)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        try:
            return TransportFactory.parse(config)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    @staticmethod
    def from_yaml(path: str) -> Transport:
        """Create a transport from a YAML file; errors name the file."""
        return TransportFactory.create(TransportFactory.load_yaml(path))
