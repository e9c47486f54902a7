"""Rogue / probe peer: speaks (and deliberately mis-speaks) AMDP/1 to the orchestrator or a hive ROUTER.

Frames are built on the host with services.protocol (the broken ones come from its catalogue in
services.protocol_malformed); a small self-contained script (`probe`, shipped as `python3 -c` source)
sends them from a DEALER and reports the replies. On the docker backend it runs in a one-off
testcontainers container on the target's network, using the stack's own image; on the local backend
it runs in-process against the router URL.
"""
from __future__ import annotations

import base64
import inspect
import json
import os
import uuid
import zlib
from typing import Any

from services import protocol as p
from services.protocol_malformed import CATALOGUE, frames as malformed

# The kinds a rogue peer sends (entries of the protocol's malformed-frame catalogue) and the ERROR code of each.
MALFORMED_KINDS = ("bad_protocol", "bad_version", "unknown_command", "bad_json", "not_object",
                   "missing_field", "wrong_frame_count", "too_large")
EXPECTED_CODE = {kind: CATALOGUE[kind].code for kind in MALFORMED_KINDS}
ROUTER_PORTS = {"orchestrator": 5555}
HIVE_ROUTER_PORT = 5556
CONTAINER_KEY_DIR = "/run/secrets/curve"


def ready_frames(role: str, peer_id: str, **body: Any) -> list[bytes]:
    """A well-formed READY (registration) from a probe hive or worker."""
    return p.encode(p.READY, {"role": role, "id": peer_id, **body})


def step(frames: list[bytes], wait_ms: int = 1500, replies: int = 1) -> dict:
    """One send-then-collect step of a probe run (frames zlib+base64 encoded: a 1 MiB frame must fit
    in a container's argv)."""
    return {"frames": [base64.b64encode(zlib.compress(f)).decode() for f in frames], "wait_ms": wait_ms,
            "replies": replies}


def probe(spec_json: str) -> dict:
    """Connect a DEALER to spec['endpoint'], run each step (send, collect up to `replies` replies within
    `wait_ms`, HEARTBEATs skipped), return {"steps": [{"replies": [[hex frames]...]}]}. Self-contained:
    shipped to containers as source."""
    import base64 as _b64
    import json as _json
    import time as _time
    import zlib as _zlib

    import zmq as _zmq
    spec = _json.loads(spec_json)
    ctx = _zmq.Context()
    sock = ctx.socket(_zmq.DEALER)
    sock.setsockopt(_zmq.LINGER, 0)
    sock.setsockopt(_zmq.IDENTITY, spec["identity"].encode())
    curve = spec.get("curve")
    if curve:  # client: the run's authorised key; stranger: a fresh key nobody listed
        import zmq.auth as _auth
        server_public, _ = _auth.load_certificate(f"{curve['dir']}/servers/{curve['server']}.key")
        public, secret = (_zmq.curve_keypair() if curve["mode"] == "stranger"
                          else _auth.load_certificate(f"{curve['dir']}/self.key_secret"))
        for option, value in ((_zmq.CURVE_SERVERKEY, server_public), (_zmq.CURVE_PUBLICKEY, public),
                              (_zmq.CURVE_SECRETKEY, secret)):
            sock.setsockopt(option, value)
    monitor = sock.get_monitor_socket(_zmq.EVENT_HANDSHAKE_SUCCEEDED | _zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                      | _zmq.EVENT_HANDSHAKE_FAILED_AUTH | _zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    sock.connect(spec["endpoint"])
    out = {"endpoint": spec["endpoint"], "steps": [], "handshakes": []}
    try:
        for st in spec["steps"]:
            # A refused peer has no connection, so a send waits for one: at most the step's own wait, so a
            # step takes wait_ms sent or not (a 1 s timeout per send made an intruder's 3 s listen take 17 s).
            sock.setsockopt(_zmq.SNDTIMEO, max(1, int(st["wait_ms"])))
            try:
                sock.send_multipart([_zlib.decompress(_b64.b64decode(f)) for f in st["frames"]])
            except _zmq.Again:
                out["steps"].append({"replies": [], "unsent": True})
                continue
            got, deadline = [], _time.monotonic() + st["wait_ms"] / 1000
            while len(got) < st["replies"]:
                left = int((deadline - _time.monotonic()) * 1000)
                if left <= 0 or not sock.poll(left):
                    break
                frames = sock.recv_multipart()
                if len(frames) >= 2 and frames[1] == b"\x05":
                    continue  # HEARTBEAT from the ROUTER: life, not an answer
                got.append([f.hex() for f in frames])
            out["steps"].append({"replies": got})
        while monitor.poll(0):  # what the handshake(s) came to: the peer's own view of being refused
            event = int.from_bytes(monitor.recv_multipart()[0][:2], "little")
            out["handshakes"].append("succeeded" if event == _zmq.EVENT_HANDSHAKE_SUCCEEDED else f"failed:{event}")
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        ctx.term()
    return out


PROBE_SCRIPT = (inspect.getsource(probe) + "\nimport sys, json\nprint(json.dumps(probe(sys.argv[1])), flush=True)\n")


def decode_reply(frames_hex: list[str]) -> dict:
    """Decode one reply into {command, body} (or {error} when even the reply is malformed)."""
    frames = [bytes.fromhex(h) for h in frames_hex]
    try:
        msg = p.decode(frames)
        return {"command": msg.name, "body": msg.body}
    except p.ProtocolError as exc:
        return {"error": exc.code, "reason": exc.reason}


class RoguePeer:
    """Runs probe specs against a service's ROUTER, inside the stack's network when the backend is docker."""

    def __init__(self, cluster: Any, log: Any = None, run_id: str = "", timeout_s: float = 30.0):
        self.cluster = cluster
        self.log = log
        self.run_id = run_id
        self.timeout_s = timeout_s
        self._containers: list[Any] = []

    @property
    def in_containers(self) -> bool:
        return hasattr(self.cluster, "container_id") and type(self.cluster).__name__ != "LocalCluster" \
            and getattr(self.cluster, "backend", "docker") != "local"

    def endpoint(self, target: str, on_host: bool = False) -> str:
        """The ROUTER endpoint of `target` as seen from where the probe runs (on_host: the published port)."""
        if on_host or not self.in_containers:
            if target == "orchestrator":
                return self.cluster.router_url
            finder = getattr(self.cluster, "router_url_of", None)
            if finder is None:
                raise RuntimeError(f"the local backend exposes no router URL for {target}")
            return finder(target)
        return f"tcp://{target}:{ROUTER_PORTS.get(target, HIVE_ROUTER_PORT)}"

    def network_for(self, target: str) -> str:
        """Short name of the network the probe joins to reach `target`."""
        return "control" if target == "orchestrator" else f"{target}-net"

    def curve_spec(self, target: str, key: str, in_container: bool) -> dict | None:
        """The probe's CURVE settings: key "client" (authorised), "stranger" (unlisted) or "none"."""
        root = getattr(self.cluster, "curve_root", None)
        if key == "none" or root is None:
            return None
        if key not in ("client", "stranger"):
            raise ValueError(f"rogue key {key!r}: use client, stranger or none")
        directory = CONTAINER_KEY_DIR if in_container else str(root / "client")
        return {"dir": directory, "server": "orchestrator" if target == "orchestrator" else "hive", "mode": key}

    def run(self, target: str, steps: list[dict], identity: str | None = None, key: str = "client",
            on_host: bool = False) -> list[list[dict]]:
        """Run steps against target (as an authorised client unless key says otherwise); per step, the replies."""
        return self.run_raw(target, steps, identity, key, on_host)["replies"]

    def run_raw(self, target: str, steps: list[dict], identity: str | None = None, key: str = "client",
                on_host: bool = False) -> dict:
        """Run steps; return {"replies": per step decoded replies, "handshakes": what the handshakes came to}."""
        identity = identity or f"rogue-{uuid.uuid4().hex[:8]}"
        in_container = self.in_containers and not on_host
        curve = self.curve_spec(target, key, in_container)
        spec = json.dumps({"endpoint": self.endpoint(target, on_host), "identity": identity, "steps": steps,
                           "curve": curve})
        value = {"target": target, "identity": identity, "steps": len(steps), "in_container": in_container,
                 "key": key if curve else "none"}
        fn = (lambda: self._run_container(target, spec, curve is not None)) if in_container else (lambda: probe(spec))
        raw = self.log.run("rogue", value, fn) if self.log is not None else fn()
        return {"replies": [[decode_reply(r) for r in st["replies"]] for st in raw["steps"]],
                "handshakes": raw.get("handshakes", [])}

    def send(self, target: str, messages: list[list[bytes]], wait_ms: int = 1500) -> list[list[dict]]:
        """Send each message (a frame list) and collect up to one reply each."""
        return self.run(target, [step(m, wait_ms=wait_ms) for m in messages])

    def send_malformed(self, target: str, kinds: tuple[str, ...] = MALFORMED_KINDS) -> dict[str, list[dict]]:
        """Send one malformed message of each kind; return kind -> decoded replies."""
        results = self.run(target, [step(malformed(k)) for k in kinds])
        return dict(zip(kinds, results))

    def register(self, target: str, role: str, peer_id: str, **body: Any) -> list[dict]:
        """READY then DISCONNECT: the control round trip; returns the replies to READY."""
        steps = [step(ready_frames(role, peer_id, **body)),
                 step(p.encode(p.DISCONNECT, {"reason": "probe done"}), wait_ms=200, replies=0)]
        return self.run(target, steps, identity=peer_id)[0]

    def impersonate_hive(self, peer_id: str, model: str, key: str, on_host: bool = False,
                         listen_ms: int = 4000) -> dict:
        """Register as a hive with one idle ready worker, then keep beating and listening for REQUESTs.

        Returns {"replies": every frame the orchestrator sent (HEARTBEATs skipped), "handshakes": [...]}.
        """
        worker = {"id": f"{peer_id}-w1", "model": model, "models": [model], "slots": 4, "free_slots": 4,
                  "state": "ready"}
        beat = p.encode(p.HEARTBEAT, {"workers": {worker["id"]: {"age_s": 0.0, "free_slots": 4, "state": "ready"}}})
        steps = [step(p.encode(p.READY, {"role": "hive", "id": peer_id, "models": [model], "workers": [worker]}),
                      wait_ms=500, replies=8)]
        steps += [step(beat, wait_ms=200, replies=32) for _ in range(max(1, listen_ms // 200))]
        steps.append(step(p.encode(p.DISCONNECT, {"reason": "probe done"}), wait_ms=100, replies=0))
        raw = self.run_raw("orchestrator", steps, identity=peer_id, key=key, on_host=on_host)
        return {"replies": [r for st in raw["replies"] for r in st], "handshakes": raw["handshakes"]}

    def _run_container(self, target: str, spec: str, with_keys: bool = False) -> dict:
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")   # no reaper image offline
        from testcontainers.core.container import DockerContainer
        import docker
        client = docker.from_env()
        image = client.containers.get(self.cluster.container_id("orchestrator")).image.id
        net = self.cluster.network_name(self.network_for(target))
        labels = {"io.apiary.role": "rogue-peer", "io.apiary.run-id": str(self.run_id)}
        container = (DockerContainer(image).with_command(["python3", "-c", PROBE_SCRIPT, spec])
                     .with_kwargs(network=net, labels=labels, user="apiary"))
        if with_keys:  # the key files are mounted, never passed on the command line or in the environment
            container = container.with_volume_mapping(str(self.cluster.curve_root / "client"), CONTAINER_KEY_DIR, "ro")
        self._containers.append(container)
        container.start()
        wrapped = container.get_wrapped_container()
        rc = wrapped.wait(timeout=self.timeout_s).get("StatusCode")
        out = wrapped.logs(stdout=True, stderr=False).decode()
        err = wrapped.logs(stdout=False, stderr=True).decode()
        if rc != 0:
            raise RuntimeError(f"rogue container exited {rc}: {err[-1500:]}")
        return json.loads(out.strip().splitlines()[-1])

    def close(self) -> None:
        """Remove every container this peer started."""
        while self._containers:
            c = self._containers.pop()
            try:
                c.get_wrapped_container().remove(force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
