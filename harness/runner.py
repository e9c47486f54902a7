"""./run-integration-tests.sh: set up images and the stack, run behave with live progress, report,
apply the gate, and always tear down. Exit 0 pass, 1 scenario/gate failure, 2 environment not set up,
4 usage error (harness/options.py: the command line; harness/selection.py: what it selects)."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.console import say
from harness.deadline import stop_group, wait_with_deadline
from harness.errors import EnvironmentSetupError
from harness.settings import Settings, git_revision
from harness.options import EXIT_ENV, EXIT_FAIL, EXIT_PASS, EXIT_USAGE, HELP, parse_args  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[1]
ALLURE_DIR = "allure-results"    # --allure: allure-behave's results, bundle files attached (apiary_suite/gather.py)

class Interrupted(Exception):
    """SIGINT/SIGTERM reached the runner."""


def on_signal(signum, _frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # teardown must finish: ignore further signals
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def choose_backend(args, meta: dict) -> str:
    """docker when asked or when an engine answers; else local, saying so and recording the fallback
    (the gate then fails if @container scenarios were skipped, unless gate.yml allows it)."""
    if args.backend == "local":
        return "local"
    from harness.stack.compose import docker_client
    try:
        docker_client(10)
        return "docker"
    except EnvironmentSetupError as exc:
        if args.backend == "docker":
            raise
        meta["backend_fallback"] = f"no Docker engine reachable: {exc.detail}"
        say(f"No Docker engine reachable ({exc.detail}): running the features against local processes "
            "(--backend local). @container scenarios will be skipped, and the gate fails on those skips "
            "unless gate.yml says allow_skips: {container: true}.")
        return "local"


def behave_command(args, run_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "behave", *behave_paths(args), "--no-skipped", "--no-summary", "--no-capture-stderr",
           "-f", "json", "-o", str(run_dir / "behave.json"),     # -o pairs with -f in order: stdout last
           "-f", "behave_html_pretty_formatter:PrettyHTMLFormatter", "-o", str(run_dir / "report.html"),
           *(["-f", "allure_behave.formatter:AllureFormatter", "-o", str(run_dir / ALLURE_DIR)]
             if getattr(args, "allure", False) else []),
           "-f", "harness.progress:ProgressFormatter",
           "--junit", "--junit-directory", str(run_dir / "junit")]
    return cmd + selection_args(args)


def behave_paths(args) -> list[str]:
    """behave's positional arguments: the selected feature paths (FILE:LINE kept), else features/."""
    selection = getattr(args, "selection", None)
    if selection is None or not args.paths:
        return [str(ROOT / "features")]
    return [str(path) + (f":{line}" if line is not None else "") for path, line in selection.locations]


def selection_args(args) -> list[str]:
    """--tags, --name, --stop and the pass-through arguments, as behave takes them."""
    cmd = []
    for expr in args.tags:
        cmd += ["--tags", expr]
    for name in args.names:
        cmd += ["--name", name]
    if args.fail_fast:
        cmd.append("--stop")
    return cmd + args.behave_args


def choose_scenarios(args) -> list:
    """The scenarios the arguments select (harness/selection.py); sets args.selection. A bad path, line,
    regex or tag expression, or an empty selection, raises selection.UsageError."""
    from harness.selection import UsageError, make_selection, select
    args.selection = make_selection(args.paths, args.tags, args.names)
    items = select(args.selection)
    if not items:
        raise UsageError(f"no scenario is selected by {' '.join(args.paths) or 'features/'}"
                         + (f" --tags {' --tags '.join(args.tags)}" if args.tags else "")
                         + "".join(f" -k {n!r}" for n in args.names) + " (see --list)")
    return items


def dry_run(args) -> int:
    """behave --dry-run over the selection (no images, no stack, no run directory): 0 when every step of
    every selected scenario has a definition, else 1."""
    cmd = [sys.executable, "-m", "behave", *behave_paths(args), "--dry-run", "--no-skipped", "--no-capture-stderr",
           "-f", "harness.progress:ProgressFormatter"] + selection_args(args)
    env = dict(os.environ, PYTHONPATH=str(ROOT), APIARY_PROGRESS_TOTAL=str(args.total))
    env.pop("APIARY_REPORT_DIR", None)
    rc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=300).returncode
    say(f"Dry run: {'every step has a definition' if rc == 0 else f'behave exited {rc} (undefined steps above)'}")
    return EXIT_PASS if rc == 0 else EXIT_FAIL


def run_behave(cmd: list[str], env: dict, limit_s: float, meta: dict, reaper=None) -> int:
    """Run behave in its own session within `limit_s`; on an interrupt forward SIGINT, then SIGKILL after 15 s.
    The reaper watches its process group while it runs (a runner killed with -9 leaves no behave behind)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    if reaper is not None:
        reaper.watch_group(proc.pid)
    try:
        rc, overran = wait_with_deadline(proc, limit_s)
        if overran:
            meta["run_limit_exceeded"] = f"behave did not finish within {limit_s / 60:g} min and was stopped"
            say(f"ERROR: {meta['run_limit_exceeded']} (rc {rc})")
        return rc
    except Interrupted:
        say("Interrupted: stopping behave...")
        stop_group(proc, 15)
        raise
    finally:
        if reaper is not None and proc.poll() is not None:
            reaper.unwatch_group(proc.pid)


def behave_phase(args, settings: Settings, run_dir: Path, meta: dict, reaper=None) -> int:
    """Run behave over the features within the run limit, then report and gate; returns the exit code."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), APIARY_PROGRESS_TOTAL=str(getattr(args, "total", "")),
               **settings.to_env())
    rc = run_behave(behave_command(args, run_dir), env, args.max_minutes * 60 * args.timeout_multiplier, meta, reaper)
    if (run_dir / "env-error.json").exists():
        err = json.loads((run_dir / "env-error.json").read_text())
        raise EnvironmentSetupError(err["what"], err["detail"])
    return finish_report(args, settings, run_dir, meta, rc)


def finish_report(args, settings: Settings, run_dir: Path, meta: dict, behave_rc: int | None) -> int:
    """summary.json, gate verdict, JUnit links, index.html, the printed table; returns the exit code."""
    from harness import gate as release_gate, report
    scenarios = report.merge(report.scenarios_from_behave(run_dir / "behave.json"),
                             report.read_jsonl(run_dir / "failures.jsonl"), report.read_jsonl(run_dir / "skips.jsonl"),
                             report.read_jsonl(run_dir / "elapsed.jsonl"))
    summary = report.summarize(scenarios, meta)
    summary["soaks"] = [k for k in report.read_jsonl(run_dir / "soaks.jsonl")]
    gate = release_gate.apply_gate(summary, args.policy)
    if meta.get("run_limit_exceeded"):
        gate["passed"] = False
        gate["reasons"].append(meta["run_limit_exceeded"] + " (scenarios not reached are missing from the totals)")
    elif behave_rc not in (0, None) and summary["totals"]["failed"] == 0:
        gate["passed"] = False
        gate["reasons"].append(f"behave exited {behave_rc} (hook or run error; see the output above)")
    summary["gate"] = gate
    code = EXIT_PASS if gate["passed"] and summary["totals"]["failed"] == 0 else EXIT_FAIL
    summary["exit_code"] = code
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if (run_dir / "junit").exists():
        report.link_junit(run_dir / "junit", summary["failures"], run_dir)
        if getattr(args, "junit_xml", None):
            from harness.selection import caller_path
            path = report.merge_junit(run_dir / "junit", caller_path(args.junit_xml))
            say(f"JUnit: {path}")
    report.write_index(run_dir, summary)
    say("\n" + report.table(summary))
    say(f"Gate: {'HOLDS' if gate['passed'] else 'FAILS'}" + "".join(f"\n  - {r}" for r in gate["reasons"]))
    say(f"Reports: {run_dir}/index.html  (summary.json, report.html, junit/, failures/)")
    return code


def write_failure(run_dir: Path, meta: dict, code: int, what: str, detail: str, index: bool = True) -> int:
    """summary.json (and index.html) of a run that ended before its report: what failed and why; returns code."""
    from harness import report
    summary = {**meta, "exit_code": code, "environment_error": what, "detail": detail}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if index:
        report.write_index(run_dir, json.loads((run_dir / "summary.json").read_text()))
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge-reports"]:
        from harness.merge_reports import main as merge_main
        return merge_main(argv[1:])
    args = parse_args(argv)
    items: list = []
    if not args.chaos:
        from harness.selection import UsageError, format_list
        try:
            items = choose_scenarios(args)
            if args.shard:              # a CI matrix job: this part of the selection only
                from harness.shards import narrow_to_matrix_shard
                items = narrow_to_matrix_shard(args, items)
        except UsageError as exc:
            print(f"run-integration-tests.sh: usage error: {exc}\nExit code {EXIT_USAGE}", file=sys.stderr)
            return EXIT_USAGE
        args.total = len(items)
        if args.list:
            say(format_list(items))
            return EXIT_PASS
        if args.dry_run:
            return dry_run(args)
    from harness.gate import GateError, load_gate
    try:
        args.policy = load_gate(Path(args.gate))
    except GateError as exc:
        say(f"ERROR: the gate policy cannot be used: {exc}")
        say(f"Exit code {EXIT_ENV}")
        return EXIT_ENV
    from harness.suite import load_suite
    try:
        suite = load_suite()    # the repository's stack names its hooks (docker-compose.integration.yml, x-apiary.suite)
    except EnvironmentSetupError as exc:
        say(f"ERROR: {exc.what}: {exc.detail}\nExit code {EXIT_ENV}")
        return EXIT_ENV
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}   # restored on return
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    from harness import report
    run_id = args.run_id or time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    report_dir = Path(args.report_dir).resolve()
    run_dir = report_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    report.point_latest(report_dir, run_dir)
    reaper = suite.Reaper(run_id, run_dir)   # sweeps the run if this process dies without tearing down (kill -9)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    settings = Settings(run_id=run_id, report_dir=str(run_dir), seed=seed, timeout_multiplier=args.timeout_multiplier,
                        keep_up=args.keep_up, stack_file=str(run_dir / "stack.json"), gate_file=str(args.gate),
                        compose_file=args.compose or "")
    os.environ["APIARY_TIMEOUT_MULTIPLIER"] = str(args.timeout_multiplier)
    chosen = "" if args.chaos else f", {args.total} scenario(s) selected"
    say(f"Apiary integration run {run_id} (seed {seed}, tags {' and '.join(args.tags) or '-'}{chosen}) -> {run_dir}")
    meta = {"run_id": run_id, "seed": seed, "tags": args.tags, "paths": args.paths, "names": args.names,
            "selected": getattr(args, "total", None), "git_revision": git_revision(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "timeout_multiplier": args.timeout_multiplier}
    if args.shard_meta or args.shard:         # one shard of a sharded run, or of a CI matrix: merge-reports reads it
        meta["shard"] = json.loads(Path(args.shard_meta).read_text()) if args.shard_meta else args.shard_info
    sharded = args.shards > 1 or bool(args.docker_hosts)
    cluster, code, timings = None, EXIT_ENV, {}
    try:
        if sharded:        # N child runners, each with its own stack (harness/shards.py); nothing of our own to stop
            from harness.shards import run_shards
            settings.backend = meta["backend"] = "docker"
            code = run_shards(args, items, run_id, run_dir, meta, say, suite)
        elif args.compose:   # another stack: its own hooks (harness/behave/hooks.py) build, start and stop it
            settings.backend = meta["backend"] = "docker"
            meta["compose_file"] = args.compose
            os.environ["APIARY_KIT_RUN_ID"] = run_id     # its resources carry this run's label: the reaper's net
            say(f"Stack from {args.compose}: its features' hooks start it")
            code = behave_phase(args, settings, run_dir, meta, reaper)
        else:
            settings.backend = choose_backend(args, meta)
            meta["backend"] = settings.backend
            if settings.backend == "docker":
                meta["images"] = suite.build_images(run_dir, args.build)
                cluster = suite.open_stack(run_id, run_dir)
                suite.start_stack(cluster, args, run_dir, meta, timings)
            meta["timings"] = timings
            if args.chaos:
                if settings.backend != "docker":
                    raise EnvironmentSetupError("no Docker engine", "--soak, --replay and --shrink need container faults")
                code = suite.run_mode(args, settings, cluster, run_dir, meta, say)
            else:
                code = behave_phase(args, settings, run_dir, meta, reaper)
    except EnvironmentSetupError as exc:
        say(f"ERROR: environment could not be set up: {exc.what}\n{exc.detail}")
        (run_dir / "env-error.json").write_text(json.dumps({"what": exc.what, "detail": exc.detail}))
        code = write_failure(run_dir, meta, EXIT_ENV, exc.what, exc.detail)    # index.html names the env failure
    except Interrupted as exc:
        say(f"Interrupted by {exc}: tearing down.")
        code = 130 if str(exc) == "SIGINT" else 143
        if not (run_dir / "summary.json").exists():   # a matrix job's merge names it instead of missing it
            write_failure(run_dir, meta, code, f"interrupted by {exc}", "the run was stopped before it finished",
                          index=False)
    except Exception as exc:  # noqa: BLE001 - the runner never exits 0 on an unexpected error
        import traceback
        traceback.print_exc()
        say(f"ERROR: runner failed: {exc!r}")
        try:   # the catch-all failure gets its summary and index.html too, naming what failed
            write_failure(run_dir, meta, EXIT_ENV, "runner failed", repr(exc)[:2000])
        except Exception as write_exc:  # noqa: BLE001 - the exit code is what matters; say why there is no page
            say(f"(no index.html: {write_exc!r})")
        code = EXIT_ENV
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if args.keep_up and cluster is not None or (args.keep_up and settings.backend == "local"):
            suite.print_keep_up(settings, cluster, run_dir)
        elif settings.backend == "docker" and cluster is None and code == EXIT_ENV and "images" not in meta:
            pass   # nothing was started
        elif sharded:
            pass   # each shard's runner tore its own stack down; run_shards swept what any left
        else:
            try:
                if not suite.teardown(settings, cluster, run_dir) and code == EXIT_PASS:
                    code = EXIT_ENV
            except Exception as exc:  # noqa: BLE001
                say(f"ERROR: teardown failed: {exc!r}")
                code = code or EXIT_ENV
        report.point_latest(report_dir, run_dir)
        reaper.release(keep=bool(args.keep_up))
        for sig, handler in previous.items():   # an in-process caller (a test) gets its own dispositions back
            signal.signal(sig, handler)
    say(f"Exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
