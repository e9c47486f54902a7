"""The runner's command line (stdlib only, so `--help` and `--list` work before the venv exists).
A usage error exits 4, like pytest's, apart from an environment failure (2) and a gate failure (1)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.deadline import RUN_LIMIT_S

ROOT = Path(__file__).resolve().parents[1]
EXIT_PASS, EXIT_FAIL, EXIT_ENV, EXIT_USAGE = 0, 1, 2, 4
DEFAULT_TAGS = ["@integration"]

HELP = """\
Run the Apiary behave features against a fresh stack (docker compose, or local processes).

selection: FEATURE paths (files or directories) and FILE:LINE pick scenarios as behave does; without
a path or --tags the default tag filter is @integration. -k/--name REGEX keeps scenarios whose name
matches (repeat to OR). --list prints the selection and exits; --dry-run also checks every step has a
definition (behave --dry-run); neither builds images nor starts anything. --help and --list install
nothing (no venv needed); --setup (the script's own option) only makes/refreshes the venv.
exit codes: 0 all selected scenarios passed and the gate holds; 1 a scenario failed or the gate
fails; 2 the environment could not be set up (no engine, build failed, unhealthy service, bad
gate.yml); 4 usage error (unknown option, bad path/line/regex/tag expression, nothing selected).
reports: <report-dir>/<run-id>/ (index.html, report.html, junit/, behave.json, summary.json,
failures/<feature>/<scenario>/); <report-dir>/latest points at the last run.
examples: ./run-integration-tests.sh --tags @integration
          ./run-integration-tests.sh features/chaos.soak.feature:12 --keep-up
          ./run-integration-tests.sh --tags @smoke -k 'JSON|SSE' --list
          ./run-integration-tests.sh --tags '@smoke and not @slow' -x --junit-xml out/junit.xml
"""
USAGE = ("%(prog)s [FEATURE[:LINE]]... [--tags EXPR]... [-k REGEX]... [-x] [--list|--dry-run]\n"
         "       [--backend docker|local] [--build|--no-build] [--keep-up] [--report-dir DIR] [--junit-xml PATH]\n"
         "       [--seed N] [--timeout-multiplier X] [--max-minutes M] [--gate FILE] [-- <behave args>]\n"
         "       [--shards N] [--docker-host URL]... [--shard i/N [--durations FILE]]\n"
         "       %(prog)s merge-reports RUN_DIR... [--out DIR] [--gate FILE] [--junit-xml PATH]\n"
         "       %(prog)s --soak [--minutes M] [--seed N] [--profile P] [--rate R] [--shrink-on-failure]\n"
         "       %(prog)s --replay RUN_DIR|schedule.json    %(prog)s --shrink RUN_DIR")


class Parser(argparse.ArgumentParser):
    """argparse with pytest's usage-error exit code (4) instead of argparse's 2 (ours means environment)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    p = Parser(prog="run-integration-tests.sh", description=HELP, usage=USAGE,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="FEATURE[:LINE]",
                   help="feature files/directories, or FILE:LINE for the scenario (or outline row) at that line")
    p.add_argument("--tags", action="append", metavar="EXPR",
                   help="behave tag expression; repeat to AND them (default without a path: @integration)")
    p.add_argument("-k", "--name", dest="names", action="append", default=[], metavar="REGEX",
                   help="only scenarios whose name matches this regular expression (behave --name; repeat to OR)")
    p.add_argument("-x", "--fail-fast", action="store_true", help="stop at the first failing scenario")
    info = p.add_mutually_exclusive_group()
    info.add_argument("--list", action="store_true",
                      help="print the selected scenarios (location, feature, name, tags) and exit; builds and "
                           "starts nothing, works without the venv")
    info.add_argument("--dry-run", action="store_true",
                      help="behave --dry-run over the selection: every step must have a definition; builds and "
                           "starts nothing")
    p.add_argument("--junit-xml", metavar="PATH", help="also write the run's JUnit (all features, bundle links) "
                                                       "into one file at PATH")
    p.add_argument("--compose", metavar="FILE",
                   help="test another stack: a compose file with an x-apiary: block (docs/kit.md); its features are "
                        "FILE's directory's features/ (their hooks, harness/behave/hooks.py, build, start and stop it)")
    p.add_argument("--allure", action="store_true",
                   help="also write allure-behave results into <run dir>/allure-results, each failed scenario's "
                        "bundle files attached (view: allure serve <run dir>/allure-results)")
    p.add_argument("--backend", choices=("docker", "local"),
                   help="docker (compose stack) or local (processes on 127.0.0.1); default: docker when an "
                        "engine answers, else local (scenarios tagged @container are then skipped)")
    b = p.add_mutually_exclusive_group()
    b.add_argument("--build", dest="build", action="store_true", default=True,
                   help="build images first (default; cached layers make it a few seconds)")
    b.add_argument("--no-build", dest="build", action="store_false", help="use the images already built (the suite checks they exist)")
    p.add_argument("--keep-up", action="store_true", help="leave the stack running; print how to reach and remove it")
    p.add_argument("--report-dir", default=str(ROOT / "reports"), metavar="DIR", help="where run directories go (default: reports/)")
    p.add_argument("--gate", default=str(ROOT / "gate.yml"), metavar="FILE",
                   help="gate policy (default: gate.yml); checked before anything starts, a bad key exits 2")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="seed for randomized steps (default: random, recorded)")
    p.add_argument("--timeout-multiplier", type=float, default=1.0, metavar="X",
                   help="scale every wait/deadline (slow machines: 2); also env APIARY_TIMEOUT_MULTIPLIER")
    p.add_argument("--max-minutes", type=float, default=RUN_LIMIT_S / 60, metavar="M",
                   help="interrupt behave after M minutes (times the multiplier) and fail the run "
                        f"(default {RUN_LIMIT_S / 60:.0f}; each scenario also has its own limit)")
    s = p.add_argument_group("scale-out (docs/scale-out.md)")
    s.add_argument("--shards", type=int, default=1, metavar="N",
                   help="run N isolated stacks in parallel (each its own compose project, ports and keys), "
                        "scenarios handed out longest first; one merged report and the gate over the union")
    s.add_argument("--docker-host", dest="docker_hosts", action="append", default=[], metavar="URL",
                   help="spread the shards over these engines (repeat; 'default' is this machine's); an engine "
                        "without the images gets them by docker save | docker load")
    s.add_argument("--shard", metavar="i/N", help="run only the i-th of N parts (a CI matrix job; the split is "
                                                  "deterministic); combine the jobs' run dirs with merge-reports")
    s.add_argument("--durations", metavar="FILE", help="with --shard: split by these scenario durations (a JSON "
                                                       "map, or a summary.json); the same file on every job")
    s.add_argument("--run-id", help=argparse.SUPPRESS)          # a shard's child run: its id, chosen by the parent
    s.add_argument("--shard-meta", help=argparse.SUPPRESS)      # a shard's child run: its plan (JSON file)
    c = p.add_argument_group("chaos runs (need the docker backend; reports as for behave, plus the soak's "
                             "history, evidence, verdict and timeline)")
    m = c.add_mutually_exclusive_group()
    m.add_argument("--soak", action="store_true", help="play a seeded generated fault schedule under client load")
    m.add_argument("--replay", metavar="PATH", help="play a soak run's schedule again (its run dir or schedule.json)")
    m.add_argument("--shrink", metavar="RUN_DIR", help="delta-debug a failed soak to a minimal failing schedule")
    c.add_argument("--minutes", type=float, default=3.0, metavar="M", help="soak length (default 3)")
    c.add_argument("--profile", metavar="P", help="fault profile: a name in the compose file's x-apiary.profiles directory, or a file "
                                                  "(default: default)")
    c.add_argument("--rate", type=float, default=20.0, metavar="R", help="client requests started per second (default 20)")
    c.add_argument("--bug", choices=("dup-final",), help="switch a deliberate bug on in every worker (self-tests)")
    c.add_argument("--shrink-on-failure", action="store_true", help="after a failed --soak, shrink it in the same run")
    c.add_argument("--shrink-runs", type=int, default=24, metavar="N", help="most replays a shrink may use (default 24)")
    return p


def check_compose(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--compose FILE: the file must exist and carry a readable x-apiary block; its features/ are the default paths."""
    from harness.stack.topology import TopologyError, load
    path = Path(args.compose).resolve()
    if args.chaos or args.backend == "local":
        p.error("--compose runs that stack's features; --soak/--replay/--shrink and --backend local are Apiary's")
    if not path.is_file():
        p.error(f"--compose {args.compose}: no such file")
    try:
        load(path)
    except TopologyError as exc:
        p.error(f"--compose: {exc}")
    args.compose = str(path)
    if not args.paths:
        features = path.parent / "features"
        if not features.is_dir():
            p.error(f"--compose {args.compose}: no features/ directory beside it ({features})")
        args.paths = [str(features)]


def schedule_problem(path: Path, file_ok: bool) -> str:
    """Why a --replay/--shrink path holds no soak schedule ("" when it does): a run or soak directory with a
    schedule.json in it or below it, or (--replay) the schedule file itself."""
    if not path.exists():
        return "no such file or directory"
    if path.is_file():
        return "" if file_ok else "not a directory (give the soak's run directory)"
    return "" if next(path.glob("**/schedule.json"), None) else "no schedule.json in it or below it (not a soak run directory)"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options before `--`; everything after it goes to behave. Usage errors exit 4."""
    behave_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, behave_args = argv[:at], argv[at + 1:]
    p = build_parser()
    args = p.parse_args(argv)
    args.chaos = bool(args.soak or args.replay or args.shrink)
    if args.chaos and args.backend == "local":
        p.error("--soak, --replay and --shrink need the docker backend (container-level faults)")
    if args.chaos and (args.paths or args.names or args.list or args.dry_run):
        p.error("--soak, --replay and --shrink take no feature paths, -k, --list or --dry-run")
    for flag, value in (("--replay", args.replay), ("--shrink", args.shrink)):
        if value and (problem := schedule_problem(Path(value), file_ok=flag == "--replay")):
            p.error(f"{flag} {value}: {problem}")
    if args.compose:
        check_compose(p, args)
    from harness.shards import check_args
    check_args(p, args)
    args.behave_args = behave_args
    args.tags = args.tags or ([] if args.paths else list(DEFAULT_TAGS))
    return args
