"""--shards N and --docker-host: N isolated stacks side by side, one child runner each (its own compose
project, networks, published ports, keys, reaper and teardown), on one engine or spread over several.
Scenarios are handed out longest first (harness/shard_plan.py, durations from earlier runs), images are
shipped to an engine that lacks them (harness/engines.py), and the children's run directories are merged
into one report with the gate over the union (harness/merge_reports.py)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.deadline import stop_group

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENGINE = "default"          # --docker-host default: the engine DOCKER_HOST (or the socket) names
STACK_OVERHEAD_S = 10 * 60          # a child's build check, stack start and teardown, beyond behave's limit
TABLE_LINE = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR|UNTESTED|TRACEBACK|HOOK_ERROR)\s+\d|^-{20}|^status\s+elapsed"
                        r"|^\d+ scenarios: |^  @p\d: |^Reports: |^\s*$")   # a shard's own final table: in its log only


def engine_urls(args) -> list[str]:
    """The engines shards go to, in order (shard k runs on engine k mod len); default: this machine's one."""
    return list(dict.fromkeys(args.docker_hosts or [DEFAULT_ENGINE]))


def engine_env(url: str) -> dict:
    """The environment of a child runner talking to engine `url` (DOCKER_HOST, or as inherited)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if url != DEFAULT_ENGINE:
        env["DOCKER_HOST"] = url
        env.pop("DOCKER_CONTEXT", None)
    return env


def src_url() -> str | None:
    """The URL of the engine the images were built on (None: the SDK's default)."""
    return os.environ.get("DOCKER_HOST") or None


def resolve(url: str) -> str | None:
    """The URL to dial for an engine name: `default` is the engine the images were built on."""
    return src_url() if url == DEFAULT_ENGINE else url


def prepare_engines(urls: list[str], images: dict[str, str], meta: dict, say) -> None:
    """Every engine must answer; one that lacks the built images gets them by save | load (no registry)."""
    from harness import engines
    tag = os.environ.get("APIARY_IMAGE_TAG", "local")
    images = {f"{name}:{tag}": image_id for name, image_id in images.items()}    # build_images keys them untagged
    meta["engines"], meta["shipping"] = {}, {}
    for url in urls:
        meta["engines"][url] = engines.describe_engine(resolve(url))        # EnvironmentSetupError names the URL
        if url == DEFAULT_ENGINE:
            continue
        missing = engines.missing_images(url, images)
        if missing:
            say(f"Shipping {len(missing)} image(s) to {url} (docker save | docker load)...")
            meta["shipping"][url] = engines.ship_images(src_url(), url, missing, deadline_s=600)
            say(f"Shipped in {meta['shipping'][url]['total_s']:.1f}s")


def child_command(args, seed: int, shard_run_id: str, meta_file: Path, locations: list[str],
                  report_dir: Path) -> list[str]:
    """The runner command line of one shard: its scenarios by location, no build, this run's seed and settings."""
    cmd = [sys.executable, "-m", "harness.runner", *locations, "--no-build", "--backend", "docker",
           "--report-dir", str(report_dir), "--run-id", shard_run_id, "--shard-meta", str(meta_file),
           "--gate", str(args.gate), "--max-minutes", str(args.max_minutes),
           "--timeout-multiplier", str(args.timeout_multiplier), "--seed", str(seed)]
    if args.fail_fast:
        cmd.append("-x")
    if args.allure:
        cmd.append("--allure")
    return cmd + (["--", *args.behave_args] if args.behave_args else [])


class Child:
    """One shard's runner process, its output prefixed on ours and kept in <shards>/<id>.log."""

    def __init__(self, index: int, count: int, url: str, run_id: str, run_dir: Path):
        self.index, self.count, self.url, self.run_id, self.run_dir = index, count, url, run_id, run_dir
        self.proc: subprocess.Popen | None = None
        self.started = self.ended = 0.0
        self.rc: int | None = None
        self._pump: threading.Thread | None = None

    def start(self, cmd: list[str], log: Path, say) -> None:
        """Start the child in its own session (Ctrl-C reaches it only through us, after which it tears down)."""
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=engine_env(self.url), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     text=True, bufsize=1)
        self._pump = threading.Thread(target=self._copy, args=(log, say), daemon=True)
        self._pump.start()

    def _copy(self, log: Path, say) -> None:
        """Copy the child's lines to its log and, prefixed with the shard, to our output."""
        with open(log, "w") as fh:
            for line in self.proc.stdout:
                fh.write(line)
                fh.flush()
                if not TABLE_LINE.match(line):
                    say(f"[shard {self.index}/{self.count}] {line.rstrip()}")

    def wait(self, until: float) -> int:
        """Wait until the monotonic time `until`; past it stop the child (SIGINT, its teardown, then SIGKILL)."""
        try:
            self.rc = self.proc.wait(max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.rc = stop_group(self.proc, 60)
        self.finish()
        return self.rc

    def stop(self) -> None:
        """Interrupt: SIGINT the child's group and give its teardown a minute."""
        if self.proc is not None and self.proc.poll() is None:
            self.rc = stop_group(self.proc, 60)
        self.finish()

    def finish(self) -> None:
        """Note the end and let the output pump drain."""
        self.ended = self.ended or time.monotonic()
        if self._pump is not None:
            self._pump.join(10)

    @property
    def dir(self) -> Path:
        return self.run_dir / "shards" / self.run_id


def write_missing_summary(child: Child, meta: dict, engine_ok: bool) -> None:
    """A child that ended without summary.json (killed, or its engine died): record why, naming the engine."""
    path = child.dir / "summary.json"
    child.dir.mkdir(parents=True, exist_ok=True)
    summary = json.loads(path.read_text()) if path.exists() else {"run_id": child.run_id, "scenarios": []}
    if path.exists() and engine_ok:
        return
    why = (f"engine {child.url} stopped answering during the run" if not engine_ok
           else f"the shard's runner exited {child.rc} without writing a report")
    summary.update(environment_error=summary.get("environment_error") or why,
                   detail=(summary.get("detail") or "") + f" [{why}]", exit_code=summary.get("exit_code") or 2,
                   shard=summary.get("shard") or meta)
    path.write_text(json.dumps(summary, indent=1, default=str))


def check_engines_clean(children: list[Child], say, up: dict[str | None, bool]) -> list[str]:
    """Sweep what any child left on an engine that still answers (up: engine URL -> alive, asked once each);
    returns what could not be removed."""
    from harness import engines
    from harness.sweep import sweep
    left: list[str] = []
    for child in children:
        url = resolve(child.url)
        if not up[url]:
            continue                            # a dead engine holds nothing that runs; it is reported
        found = engines.leftovers_on(url, child.run_id)
        if any(found.values()):
            say(f"Shard {child.index}: sweeping leftovers on {child.url}: {found}")
            sweep(engines.engine_client(url, 30), child.run_id)
            found = engines.leftovers_on(url, child.run_id)
            left += [f"{child.url}: {kind} {names}" for kind, names in found.items() if names]
    return left


def run_shards(args, items: list, run_id: str, run_dir: Path, meta: dict, say, suite: Any) -> int:
    """Plan, build the suite's images once, start the shards, wait for them within the run limit, merge their
    reports; returns the exit code."""
    from harness import merge_reports, shard_plan
    urls = engine_urls(args)
    meta["images"] = suite.build_images(run_dir, args.build)
    prepare_engines(urls, meta["images"], meta, say)
    durations = shard_plan.history_durations(Path(args.report_dir).resolve())
    plan = shard_plan.plan_shards(items, args.shards, durations)
    meta["plan"] = {"shards": len(plan), "known_durations": sum(shard_plan.unit_key(i) in durations for i in items)}
    say(f"{len(items)} scenario(s) over {len(plan)} shard(s) on {len(urls)} engine(s): "
        + ", ".join(f"{k + 1}: {len(group)}" for k, group in enumerate(plan)))
    shards_dir = run_dir / "shards"
    shards_dir.mkdir(exist_ok=True)
    children: list[Child] = []
    try:
        for k, group in enumerate(plan):
            url = urls[k % len(urls)]
            child = Child(k + 1, len(plan), url, f"{run_id}-s{k + 1}", run_dir)
            shard = shard_plan.shard_meta(k + 1, len(plan), group, items, url)
            meta_file = shards_dir / f"shard-{k + 1}.json"
            meta_file.write_text(json.dumps(shard, indent=1))
            cmd = child_command(args, meta["seed"], child.run_id, meta_file, [i.location for i in group], shards_dir)
            child.start(cmd, shards_dir / f"shard-{k + 1}.log", say)
            children.append(child)
        until = time.monotonic() + args.max_minutes * 60 * args.timeout_multiplier + STACK_OVERHEAD_S
        for child in children:
            child.wait(until)
    except BaseException:
        for child in children:
            child.stop()
        raise
    finally:
        meta["shard_runs"] = [{"index": c.index, "engine": c.url, "run_id": c.run_id, "exit_code": c.rc,
                               "wall_s": round((c.ended or time.monotonic()) - c.started, 1)} for c in children]
    from harness import engines
    up = {url: engines.alive(url) for url in {resolve(c.url) for c in children}}   # one ping per engine
    for child in children:
        write_missing_summary(child, json.loads((shards_dir / f"shard-{child.index}.json").read_text()),
                              up[resolve(child.url)])
    left = check_engines_clean(children, say, up)
    summary = merge_reports.merge_runs([c.dir for c in children], run_dir, args.policy, meta=meta)
    code = summary["exit_code"]
    if left:
        say(f"ERROR: leftovers could not be removed: {left}")
        code = code or 2
    from harness.report import table
    say("\n" + table(summary))
    gate = summary["gate"]
    say(f"Gate: {'HOLDS' if gate['passed'] else 'FAILS'}" + "".join(f"\n  - {r}" for r in gate["reasons"]))
    say(f"Reports: {run_dir}/index.html  (summary.json; each shard's run under shards/)")
    return code


def check_args(p, args) -> None:
    """Usage rules of --shards, --docker-host and --shard (errors exit 4 through the parser)."""
    if args.shards < 1:
        p.error(f"--shards {args.shards}: must be at least 1")
    sharded = args.shards > 1 or bool(args.docker_hosts)
    if sharded and args.shard:
        p.error("--shards/--docker-host run every shard here; --shard i/N runs one of a CI matrix: pick one")
    if (sharded or args.shard) and (args.chaos or args.compose or args.keep_up or args.backend == "local"):
        p.error("--shards, --docker-host and --shard run Apiary's features on docker stacks: not with "
                "--soak/--replay/--shrink, --compose, --keep-up or --backend local")
    if args.shard:
        from harness.shard_plan import parse_shard
        try:
            args.shard_index, args.shard_count = parse_shard(args.shard)
        except ValueError as exc:
            p.error(f"--shard: {exc}")
    if args.durations and not args.shard:
        p.error("--durations FILE is for --shard i/N (every matrix job must split by the same figures)")


def narrow_to_matrix_shard(args, items: list) -> list:
    """--shard i/N: keep this job's part of the selection (the same split on every job) and record it."""
    from harness import shard_plan
    from harness.selection import UsageError, caller_path, make_selection
    try:
        durations = shard_plan.read_durations(caller_path(args.durations)) if args.durations else None
    except ValueError as exc:
        raise UsageError(f"--durations: {exc}") from None
    mine = shard_plan.split_for_matrix(items, args.shard_index, args.shard_count, durations)
    if not mine:
        raise UsageError(f"--shard {args.shard}: this part is empty (the selection has {len(items)} scenario(s)); "
                         "use fewer matrix jobs")
    args.shard_info = shard_plan.shard_meta(args.shard_index, args.shard_count, mine, items,
                                            os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE)
    args.paths, args.tags, args.names = [i.location for i in mine], [], []
    args.selection = make_selection(args.paths, [], [])
    return mine
