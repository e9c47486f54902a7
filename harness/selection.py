"""Scenario selection without a stack: feature paths and `path:line`, tag expressions and `-k` names, as
behave applies them; and the `--list` listing. Uses behave's own parser and tag expressions when behave
imports, else harness.gherkin_scan (stdlib only: `--list` works on a machine without the venv)."""
from __future__ import annotations

import os
import re
from bisect import bisect
from dataclasses import dataclass
from pathlib import Path

from harness import gherkin_scan

ROOT = Path(__file__).resolve().parents[1]


class UsageError(Exception):
    """The command line names something that does not exist or cannot be parsed (exit 4)."""


@dataclass(frozen=True)
class Item:
    """One runnable scenario (an outline contributes one per Examples row)."""

    feature: str
    name: str
    path: str           # relative to the project root when inside it
    line: int
    tags: tuple[str, ...]

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Selection:
    """The arguments that choose scenarios: locations (path, line or None), tag expressions, name regexes."""

    locations: tuple[tuple[Path, int | None], ...]
    tags: tuple[str, ...]
    names: tuple[str, ...]


def caller_path(text: str) -> Path:
    """A path as the user typed it: relative to the directory the script was started from (APIARY_CWD;
    run-integration-tests.sh cds to the project root)."""
    return Path(os.environ.get("APIARY_CWD") or os.getcwd()) / Path(text).expanduser()


def split_location(arg: str, root: Path = ROOT) -> tuple[Path, int | None]:
    """'features/x.feature:12' -> (path, 12); a directory or file without a line -> (path, None)."""
    text, line = arg, None
    m = re.fullmatch(r"(.+?):(\d+)", arg)
    if m:
        text, line = m.group(1), int(m.group(2))
    path = caller_path(text)
    if not path.exists() and (root / text).exists():
        path = root / text      # features/x.feature from anywhere
    if not path.exists():
        raise UsageError(f"no such feature file or directory: {arg}")
    if line is not None and not path.is_file():
        raise UsageError(f"a line number needs a feature file: {arg}")
    if path.is_file() and path.suffix != ".feature":
        raise UsageError(f"not a .feature file: {arg}")
    return path.resolve(), line


def make_selection(paths: list[str], tags: list[str], names: list[str], root: Path = ROOT) -> Selection:
    """Check every argument (a bad path, line or regex is a UsageError) and bundle them."""
    for n in names:
        try:
            re.compile(n)
        except re.error as exc:
            raise UsageError(f"-k/--name {n!r} is not a regular expression: {exc}") from None
    locations = tuple(split_location(p, root) for p in paths) or ((root / "features", None),)
    matcher(list(tags))     # raises UsageError on a malformed expression
    return Selection(locations, tuple(tags), tuple(names))


def behave_available() -> bool:
    try:
        import behave.parser  # noqa: F401
        return True
    except ImportError:
        return False


def matcher(tags: list[str]):
    """A callable tags -> bool for the AND of the expressions (behave's when it imports)."""
    if not tags:
        return lambda _tags: True
    if behave_available():
        from behave.tag_expression import make_tag_expression
        try:
            expr = make_tag_expression(tags)
        except Exception as exc:  # noqa: BLE001 - behave raises several types
            raise UsageError(f"--tags {' '.join(tags)!r}: {exc}") from None
        return expr.check
    try:
        checks = [gherkin_scan.parse_tag_expression(t) for t in tags]
    except ValueError as exc:
        raise UsageError(f"--tags: {exc}") from None
    return lambda have: all(check(set(have)) for check in checks)


def relative(path: Path, root: Path = ROOT) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def read_blocks(path: Path, root: Path = ROOT) -> list[tuple[int, list[Item]]]:
    """(line, items that line selects) for a feature file: line 0 and the Feature line select all,
    an outline's line all its rows, a scenario's or a row's line that one."""
    rel = relative(path, root)
    if behave_available():
        from behave.model import ScenarioOutline
        from behave.parser import parse_file
        feature = parse_file(str(path))
        if feature is None:
            return []
        fname, fline, entries, row_ids = feature.name, feature.line, [], set()
        for s in feature.walk_scenarios(with_outlines=True):
            if id(s) in row_ids:
                continue      # an outline's row: listed with its outline
            row_ids |= {id(r) for r in getattr(s, "scenarios", [])}
            rows = [(r.line, r.name, sorted(r.effective_tags)) for r in s.scenarios] if isinstance(s, ScenarioOutline) else None
            entries.append((s.line, s.name, sorted(s.effective_tags), rows))
    else:
        fname, fline, entries = gherkin_scan.scan(path.read_text(encoding="utf-8"))
        if fname is None:
            return []
    blocks, every = [], []
    for line, name, tags, rows in entries:
        if rows is None:
            item = Item(fname, name, rel, line, tuple(tags))
            blocks.append((line, [item]))
            every.append(item)
        else:
            items = [Item(fname, n, rel, ln, tuple(t)) for ln, n, t in rows]
            blocks.append((line, items))
            blocks += [(i.line, [i]) for i in items]
            every += items
    blocks += [(0, every), (fline, every)]
    return sorted(blocks, key=lambda b: (b[0], -len(b[1])))


def at_line(blocks: list[tuple[int, list[Item]]], line: int) -> list[Item]:
    """The items behave runs for `path:line`: the entity at that line, else the one before it."""
    lines = [b[0] for b in blocks]
    pos = max(0, bisect(lines, line) - 1)
    while pos > 0 and lines[pos - 1] == lines[pos]:
        pos -= 1          # the widest entity on a line (a Feature line over its first scenario)
    return blocks[pos][1] if blocks else []


def feature_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(path.rglob("*.feature"))


def select(selection: Selection, root: Path = ROOT) -> list[Item]:
    """The scenarios behave will run for this selection, in run order, each once."""
    check = matcher(list(selection.tags))
    names = [re.compile(n) for n in selection.names]
    out: list[Item] = []
    seen: set[tuple[str, int]] = set()
    for path, line in selection.locations:
        for f in feature_files(path):
            blocks = read_blocks(f, root)
            items = at_line(blocks, line) if line is not None else next((b[1] for b in blocks if b[0] == 0), [])
            for item in items:
                if (item.path, item.line) in seen or not check(list(item.tags)):
                    continue
                if names and not any(n.search(item.name) for n in names):
                    continue
                seen.add((item.path, item.line))
                out.append(item)
    return out


def format_list(items: list[Item]) -> str:
    """`--list` output: one `path:line  Feature › Scenario  @tags` line per scenario and a count."""
    width = max((len(i.location) for i in items), default=0)
    lines = [f"{i.location:<{width}}  {i.feature} › {i.name.rstrip()}  {' '.join('@' + t for t in i.tags)}"
             for i in items]
    parser = "behave" if behave_available() else "a stdlib scan: behave is not importable"
    features = len({i.path for i in items})
    return "\n".join(lines + [f"{len(items)} scenario(s) in {features} feature file(s) selected (parsed with {parser})"])
