"""Load and validate an example YAML file: endpoints (transport configs) and stages (who sends, who receives).

Schema (every example file documents its own keys in comments)::

    name: str                 # shown in the output
    description: str
    messages: int             # messages the source emits (ids 0..messages-1)
    payload_bytes: int        # payload size, default 64
    timeout_s: float          # deadline for the whole run, default 60
    endpoints:                # name -> services.transport factory config, plus:
      NAME: {transport, pattern, protocol, address?, zeromq?, bind: STAGE}
    stages:
      - name: str
        kind: source | pipe_source | worker | sink
        input: ENDPOINT       # worker, sink
        output: ENDPOINT      # source, pipe_source, worker
        topics: [str]         # source on pub_sub: message i gets topics[i % len]
        subscribe_filter: str | [str]   # sink on pub_sub
        replicas: int         # default 1
        run_in: thread | process        # default thread
        command: [argv]       # pipe_source: the child writing framed messages to stdout
        pipe: {framing, line_encoding}  # pipe_source
"""

from __future__ import annotations

from typing import Any

import yaml

from services.transport import ConfigError, TransportFactory

KINDS = ("source", "pipe_source", "worker", "sink")
STAGE_KEYS = ("name", "kind", "input", "output", "topics", "subscribe_filter", "replicas", "run_in",
              "command", "pipe")
TOP_KEYS = ("name", "description", "run", "messages", "payload_bytes", "timeout_s", "endpoints", "stages")
SOURCES = ("source", "pipe_source")


def load(path: str) -> dict[str, Any]:
    """Read and validate an example file; ConfigError names the file and the key."""
    try:
        with open(path, encoding="utf-8") as handle:
            spec = yaml.safe_load(handle)
        validate(spec)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except (yaml.YAMLError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    spec.setdefault("payload_bytes", 64)
    spec.setdefault("timeout_s", 60)
    for stage in spec["stages"]:
        stage.setdefault("replicas", 1)
        stage.setdefault("run_in", "thread")
    return spec


def _need(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless cond."""
    if not cond:
        raise ConfigError(message)


def validate(spec: Any) -> None:
    """Check keys, kinds, endpoint references and the single-source rule."""
    _need(isinstance(spec, dict), "the file must hold a mapping")
    for key in spec:
        _need(key in TOP_KEYS, f"unknown key {key!r}; allowed: {', '.join(TOP_KEYS)}")
    _need(isinstance(spec.get("messages"), int) and spec["messages"] > 0, "key 'messages' must be a positive int")
    endpoints, stages = spec.get("endpoints"), spec.get("stages")
    _need(isinstance(endpoints, dict) and endpoints, "key 'endpoints' must be a non-empty mapping")
    _need(isinstance(stages, list) and stages, "key 'stages' must be a non-empty list")
    names = [s.get("name") for s in stages if isinstance(s, dict)]
    _need(len(names) == len(stages) and len(set(names)) == len(names), "every stage needs a unique 'name'")
    for stage in stages:
        for key in stage:
            _need(key in STAGE_KEYS, f"stage {stage['name']}: unknown key {key!r}; allowed: {', '.join(STAGE_KEYS)}")
        _need(stage.get("kind") in KINDS, f"stage {stage['name']}: key 'kind' must be one of {', '.join(KINDS)}")
        _need(stage.get("run_in", "thread") in ("thread", "process"),
              f"stage {stage['name']}: key 'run_in' must be thread or process")
        for key in ("input", "output"):
            if key in stage:
                _need(stage[key] in endpoints, f"stage {stage['name']}: {key} {stage[key]!r} is not an endpoint")
        if stage["kind"] == "pipe_source":
            _need(isinstance(stage.get("command"), list), f"stage {stage['name']}: pipe_source needs 'command'")
    _need(sum(s["kind"] in SOURCES for s in stages) == 1, "exactly one stage must be a source or pipe_source")
    for name, endpoint in endpoints.items():
        _need(isinstance(endpoint, dict), f"endpoint {name}: must be a mapping")
        _need(endpoint.get("bind") in names, f"endpoint {name}: key 'bind' must name the stage that binds it")
        config = {k: v for k, v in endpoint.items() if k != "bind"}
        roles = {"pub_sub": "publisher", "push_pull": "push", "req_rep": "rep", "router_dealer": "router"}
        try:
            TransportFactory.parse({**config, "role": roles.get(config.get("pattern"), "push"), "mode": "bind",
                                    "name": name})
        except ConfigError as exc:
            raise ConfigError(f"endpoint {name}: {exc}") from exc


def source_of(spec: dict) -> dict:
    """Return the one source stage."""
    return next(s for s in spec["stages"] if s["kind"] in SOURCES)


def connecting_peers(spec: dict, endpoint: str) -> int:
    """Return how many stage replicas connect to endpoint (everyone but its binder)."""
    binder = spec["endpoints"][endpoint]["bind"]
    return sum(s["replicas"] for s in spec["stages"]
               if s["name"] != binder and endpoint in (s.get("input"), s.get("output")))


def subscriptions(spec: dict, endpoint: str) -> int:
    """Return how many subscriptions the sinks of a pub_sub endpoint will send."""
    total = 0
    for stage in spec["stages"]:
        if stage.get("input") == endpoint:
            topics = stage.get("subscribe_filter", "")
            total += stage["replicas"] * (len(topics) if isinstance(topics, list) else 1)
    return total


def topic_of(spec: dict, index: int) -> str:
    """Return the topic of message index ("" when the source has no topics)."""
    topics = source_of(spec).get("topics") or [""]
    return topics[index % len(topics)]


def expected_ids(spec: dict, sink: dict) -> list[int]:
    """Return the ids a sink must receive, in publication order."""
    count = spec["messages"]
    if spec["endpoints"][sink["input"]].get("pattern") != "pub_sub":
        return list(range(count))
    filters = sink.get("subscribe_filter", "")
    filters = filters if isinstance(filters, list) else [filters]
    return [i for i in range(count) if any(topic_of(spec, i).startswith(f) for f in filters)]
