"""Environment benchmark (`python -m bench.environment [--cold]`): cold build incl. base bootstrap
(with --cold: a base bootstrapped under a throwaway name, so no layer is cached), rebuild after a
one-line service change (in a scratch copy), stack up to healthy (rounds alternating between the
harness's Compose v2 ordered start and Compose v1 `up -d`, medians side by side), per-scenario reset,
teardown.
Writes reports/bench/environment.json. Uses the `bench` tag and removes its own images afterwards:
images of other runs (apiary/*:local, the shared base) are never removed."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"cold_build_s": 180, "rebuild_s": 15, "up_s": 5, "reset_s": 1, "teardown_s": 5}
TAG = "bench"


def build(context: Path, env: dict) -> float:
    """Run scripts/build-images.sh on a context; returns seconds (raises with the output on failure)."""
    start = time.monotonic()
    proc = subprocess.run([str(ROOT / "scripts" / "build-images.sh"), str(context)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"build failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.monotonic() - start


def copy_context(dest: Path) -> Path:
    """A scratch copy of what the images need (services/, docker/, requirements) to edit freely."""
    for name in ("services", "docker", "requirements"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def measure(args) -> dict:
    from apiary_suite.cluster import Cluster, docker_client
    from apiary_suite.entry import built_refs
    from harness.sweep import remove_image_refs, sweep
    client = docker_client()
    env = dict(os.environ, APIARY_IMAGE_TAG=TAG)
    result: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "targets_s": TARGETS,
                    "load_avg_at_start": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="apiary-bench-") as tmp:
        context = copy_context(Path(tmp))
        if args.cold:   # a base under a throwaway name: nothing above it can come from the cache
            cold_env = dict(env, APIARY_BASE_REPO=f"apiary-base-bench-{secrets.token_hex(3)}")
            result["cold_build_s"] = round(build(context, cold_env), 2)
            result["cold_base"] = cold_env["APIARY_BASE_REPO"]
        else:
            build(context, env)                       # warm: identical content hits the cache
        with open(context / "services" / "orchestrator" / "__init__.py", "a") as fh:
            fh.write(f"# bench {secrets.token_hex(4)}\n")   # the one-line service change
        result["rebuild_s"] = round(build(context, env), 2)
    result.update(measure_up(client, args.up_rounds))
    if args.health_intervals:
        result.update(measure_health_interval(client, args.up_rounds, args.health_intervals.split(","), args.idle_seconds))
    cluster = Cluster("bench-" + secrets.token_hex(3), image_tag=TAG, client=client)
    try:
        cluster.up(120)
        start = time.monotonic()
        cluster.wait_ready(60)
        result["ready_after_healthy_s"] = round(time.monotonic() - start, 2)
        result["idle_cores"] = idle_cores(args.idle_seconds)
        resets = [cluster.reset() for _ in range(args.rounds)]
        result["reset_s"] = round(statistics.median(resets), 3)
        result["reset_max_s"] = round(max(resets), 3)
        cluster.pause("worker-b1")
        cluster.disconnect("hive-a", "control")
        result["reset_after_pause_and_partition_s"] = round(cluster.reset(), 3)
    finally:
        start = time.monotonic()
        leftover = cluster.down()
        result["teardown_s"] = round(time.monotonic() - start, 2)
        leftover += sweep(client, cluster.run_id, cluster.project)
        result["teardown_leftovers"] = leftover
    cold_tags = [t for img in client.images.list(name=result.get("cold_base", "-none-")) for t in img.tags]
    remove_image_refs(client, built_refs(TAG) + cold_tags)   # the bench's own tags only (layers shared with :local stay)
    client.images.prune(filters={"dangling": True, "label": "io.apiary.project=apiary"})
    result["meets_targets"] = {k: result[k] <= v for k, v in TARGETS.items() if k in result}
    return result


def idle_cores(seconds: float) -> float:
    """Cores the whole machine kept busy over `seconds` (from /proc/stat), with the stack up and idle."""
    def busy() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4], sum(fields)
    b0, t0 = busy()
    time.sleep(seconds)
    b1, t1 = busy()
    return round((b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1), 3)


def up_and_flags(cluster) -> tuple[float, float]:
    """Bring the stack up: seconds until every service answers /health, and until Docker's HEALTHCHECK
    flags them all healthy (one check interval behind)."""
    up_s = cluster.up(120)
    start = time.monotonic()
    cluster.wait_reported_healthy(30)
    return round(up_s, 2), round(up_s + time.monotonic() - start, 2)


def measure_health_interval(client, rounds: int, intervals: list[str], idle_s: float) -> dict:
    """Per compose healthcheck interval (APIARY_HEALTH_INTERVAL), alternating rounds: stack up, up to
    Docker's flags, and idle_cores with the stack ready; medians side by side."""
    from apiary_suite.cluster import Cluster
    rows: dict[str, dict[str, list[float]]] = {iv: {"up_s": [], "flags_s": [], "idle_cores": []} for iv in intervals}
    saved = os.environ.get("APIARY_HEALTH_INTERVAL")
    try:
        for i in range(rounds):
            for iv in intervals:
                os.environ["APIARY_HEALTH_INTERVAL"] = iv
                cluster = Cluster(f"bench-hc{i}-" + secrets.token_hex(2), image_tag=TAG, client=client)
                try:
                    up_s, flags_s = up_and_flags(cluster)
                    rows[iv]["up_s"].append(up_s)
                    rows[iv]["flags_s"].append(flags_s)
                    cluster.wait_ready(60)
                    rows[iv]["idle_cores"].append(idle_cores(idle_s))
                finally:
                    cluster.down()
    finally:
        os.environ.pop("APIARY_HEALTH_INTERVAL", None)
        if saved is not None:
            os.environ["APIARY_HEALTH_INTERVAL"] = saved
    return {"health_interval_samples": rows,
            "health_interval_medians": {iv: {k: statistics.median(v) for k, v in r.items()} for iv, r in rows.items()}}


def measure_up(client, rounds: int) -> dict:
    """Stack up to all healthy, `rounds` times per compose generation present, alternating; medians."""
    from apiary_suite.cluster import Cluster
    from harness.compose import LOCAL_COMPOSE_V2, compose_major
    kinds = {}
    for name, cmd in (("v2", ["docker", "compose"]), ("v2", [str(LOCAL_COMPOSE_V2)]), ("v1", ["docker-compose"])):
        if name not in kinds and shutil.which(cmd[0]) and compose_major(cmd) == int(name[1]):
            kinds[name] = cmd
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    flags: dict[str, list[float]] = {k: [] for k in kinds}
    levels: list = []
    for i in range(rounds):
        for name, cmd in kinds.items():
            cluster = Cluster(f"bench-up{i}{name}-" + secrets.token_hex(2), compose=cmd, image_tag=TAG, client=client)
            try:
                up_s, flags_s = up_and_flags(cluster)
                samples[name].append(up_s)
                flags[name].append(flags_s)
                levels += [cluster.startup] if cluster.startup else []
            finally:
                cluster.down()
    out = {"up_samples_s": samples, "up_compose": {k: " ".join(v) for k, v in kinds.items()},
           "up_median_s": {k: statistics.median(v) for k, v in samples.items() if v},
           "up_to_docker_flags_median_s": {k: statistics.median(v) for k, v in flags.items() if v}}
    main_kind = "v2" if "v2" in samples else "v1"
    out["up_s"] = out["up_median_s"][main_kind]
    if "v1" in samples and "v2" in samples:
        out["up_v1_over_v2"] = round(out["up_median_s"]["v1"] / out["up_median_s"]["v2"], 2)
    if levels:   # per depends_on level: container start and time to /health, medians over the v2 rounds
        out["up_v2_levels"] = [{"services": lvl["services"],
                                "start_s": statistics.median(r[n]["start_s"] for r in levels),
                                "healthy_s": statistics.median(r[n]["healthy_s"] for r in levels)}
                               for n, lvl in enumerate(levels[0])]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cold", action="store_true",
                   help="also measure a cold build incl. the debootstrap base (~2 min; needs root and the Debian mirror)")
    p.add_argument("--rounds", type=int, default=10, help="reset rounds (median reported)")
    p.add_argument("--up-rounds", type=int, default=5, help="stack-up rounds per compose generation (medians reported)")
    p.add_argument("--idle-seconds", type=float, default=10, help="window for idle_cores (stack up, no load)")
    p.add_argument("--health-intervals", default="", metavar="A,B",
                   help="also compare compose healthcheck intervals side by side, e.g. 500ms,2s (stack up, flags, idle cores)")
    p.add_argument("--out", default=str(ROOT / "reports" / "bench" / "environment.json"))
    args = p.parse_args()
    result = measure(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
