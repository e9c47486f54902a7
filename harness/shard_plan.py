"""Which scenarios each shard runs: durations measured by earlier runs (their summary.json files), a
longest-first (LPT) plan onto N stacks, the deterministic `--shard i/N` split every CI matrix job computes
alike, and the metadata a shard's summary.json carries so that merge-reports can check the shards fit."""
from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from pathlib import Path
from typing import Iterable, Sequence

from harness.selection import ROOT, Item

FALLBACK_S = 10.0           # the guess for a scenario no run has measured, when nothing is known at all
NOT_RUN = {"skipped", "untested"}   # statuses whose times measure nothing
WHOLE_STACK_TAG = "fresh_stack"     # at feature level: the feature's scenarios share one recreated stack


def scenario_key(feature: str | None, scenario: str | None) -> str:
    """The identity of a scenario across runs: its feature and scenario names (report.py's pair)."""
    return f"{(feature or '').strip()} › {(scenario or '').strip()}"


def unit_key(item: Item) -> str:
    """The history key of a selected scenario."""
    return scenario_key(item.feature, item.name)


def file_order(item: Item) -> tuple[str, int]:
    """The order behave runs scenarios in: file, then line."""
    return item.path, item.line


def summary_files(report_dir: Path) -> list[Path]:
    """Every run's (and every shard's) summary.json under report_dir, newest first; `latest` and the merged
    summary of a run whose shards/ are there are skipped (they would count the same scenarios twice)."""
    report_dir = Path(report_dir)
    found = []
    for pattern in ("*/summary.json", "*/shards/*/summary.json"):
        for path in report_dir.glob(pattern):
            parts = path.relative_to(report_dir).parts[:-1]
            if any((report_dir.joinpath(*parts[:k])).is_symlink() for k in range(1, len(parts) + 1)):
                continue      # reports/latest is a link to a run already counted
            if pattern == "*/summary.json" and any((path.parent / "shards").glob("*/summary.json")):
                continue      # a --shards run's merged union: its shards are counted one by one
            try:
                found.append((path.stat().st_mtime, str(path), path))
            except OSError:
                continue
    return [p for _, _, p in sorted(found, key=lambda t: (-t[0], t[1]))]


def measured(scenarios: object) -> Iterable[tuple[str, float]]:
    """(key, seconds) for each well-formed scenario record that ran; anything malformed is passed over."""
    if not isinstance(scenarios, list):
        return
    for s in scenarios:
        if not isinstance(s, dict) or s.get("status") in NOT_RUN:
            continue
        value = s.get("elapsed_s", s.get("duration_s"))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            continue
        if isinstance(s.get("feature"), str) and isinstance(s.get("scenario"), str):
            yield scenario_key(s["feature"], s["scenario"]), float(value)


def history_durations(report_dir: Path, limit: int = 10) -> dict[str, float]:
    """Median wall time (elapsed_s, else duration_s) per scenario key over the newest `limit` readable
    summaries that hold scenarios; unreadable files, bad JSON and environment failures are passed over."""
    samples: dict[str, list[float]] = {}
    used = 0
    for path in summary_files(report_dir):
        if used >= limit:
            break
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list) or not data["scenarios"]:
            continue
        used += 1
        for key, seconds in measured(data["scenarios"]):
            samples.setdefault(key, []).append(seconds)
    return {k: round(statistics.median(v), 3) for k, v in samples.items()}


def read_durations(path: Path) -> dict[str, float]:
    """A durations file ({"Feature › Scenario": seconds}, or an earlier run's summary.json), as `--shard i/N`
    takes it; ValueError names the file and the bad entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"durations file {path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"durations file {path}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("scenarios"), list):     # an earlier run's summary.json
        data = {scenario_key(s["feature"], s["scenario"]): s.get("elapsed_s", s.get("duration_s", 0))
                for s in data["scenarios"] if isinstance(s, dict) and "feature" in s and "scenario" in s}
    if not isinstance(data, dict):
        raise ValueError(f"durations file {path}: must be a JSON object of \"Feature › Scenario\": seconds, "
                         "or a summary.json")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"durations file {path}: {key!r} must be seconds >= 0, not {value!r}")
    return {k: float(v) for k, v in data.items()}


def feature_tags(path: str, root: Path = ROOT) -> set[str] | None:
    """The tags written above a feature file's `Feature:` line (None when the file cannot be read)."""
    file = Path(path) if Path(path).is_absolute() else Path(root) / path
    tags: set[str] = set()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for raw in lines:
        line = raw.strip()
        if line.startswith("@"):
            tags |= {t[1:] for t in line.split("#")[0].split() if t.startswith("@")}
        elif line.startswith(("Feature:", "Ability:", "Business Need:")):
            return tags
        elif line and not line.startswith("#"):
            tags.clear()      # tags belong to the next keyword only
    return tags


def units_of(items: Sequence[Item], root: Path = ROOT) -> list[list[Item]]:
    """Scheduling units in file order: a feature tagged @fresh_stack at feature level is one unit (its
    fixture recreates the stack once per shard it lands in); every other scenario is a unit of its own.
    When the feature file cannot be read, a feature all of whose scenarios carry the tag counts as tagged."""
    by_path: dict[str, list[Item]] = {}
    for item in items:
        by_path.setdefault(item.path, []).append(item)
    whole: set[str] = set()
    for path, group in by_path.items():
        tags = feature_tags(path, root)
        if (WHOLE_STACK_TAG in tags) if tags is not None else all(WHOLE_STACK_TAG in i.tags for i in group):
            whole.add(path)
    units: list[list[Item]] = []
    for path in sorted(by_path):
        group = sorted(by_path[path], key=file_order)
        units += [group] if path in whole else [[i] for i in group]
    return units


def guess_for_unknown(items: Sequence[Item], durations: dict[str, float], default_s: float | None) -> float:
    """default_s; else the median of the selection's measured scenarios (else of every measured one); else 10 s."""
    if default_s is not None:
        return float(default_s)
    known = [durations[unit_key(i)] for i in items if unit_key(i) in durations]
    if known:
        return float(statistics.median(known))
    return float(statistics.median(durations.values())) if durations else FALLBACK_S


def unit_seconds(unit: list[Item], durations: dict[str, float], guess: float) -> float:
    """The expected wall time of a unit: its scenarios' measured (or guessed) times added up."""
    return sum(max(0.0, float(durations.get(unit_key(i), guess))) for i in unit)


def plan_shards(items: Sequence[Item], n: int, durations: dict[str, float] | None,
                default_s: float | None = None, root: Path = ROOT) -> list[list[Item]]:
    """Longest-processing-time-first onto min(n, units) bins: the longest unit goes to the least-loaded
    bin (ties: the bin with fewer scenarios, then the lower index; equal units in location order). Each
    bin is in file order; no bin is empty, so fewer than n bins come back when there are fewer units."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of shards must be a whole number >= 1, not {n!r}")
    durations = dict(durations or {})
    units = units_of(items, root)
    if not units:
        return []
    guess = guess_for_unknown(items, durations, default_s)
    timed = sorted(((unit_seconds(u, durations, guess), u) for u in units),
                   key=lambda t: (-t[0], file_order(t[1][0])))
    bins: list[list[Item]] = [[] for _ in range(min(n, len(units)))]
    loads = [0.0] * len(bins)
    for seconds, unit in timed:
        at = min(range(len(bins)), key=lambda b: (loads[b], len(bins[b]), b))
        bins[at] += unit
        loads[at] += seconds
    return [sorted(b, key=file_order) for b in bins]


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): shard i of N, 1 <= i <= N; ValueError names the text."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"--shard {text!r}: expected i/N (shard i of N, counted from 1), e.g. 2/4")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise ValueError(f"--shard {text!r}: N must be at least 1")
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: i must be between 1 and {count} (shards are counted from 1)")
    return index, count


def split_for_matrix(items: Sequence[Item], index: int, count: int, durations: dict[str, float] | None = None,
                     root: Path = ROOT) -> list[Item]:
    """Shard `index` of `count` (1-based, as `--shard i/N`), the same on every job of a checkout: LPT over
    `durations` (a file every job reads) when given, else round-robin over the units in location order.
    A shard beyond the number of units gets no scenario."""
    for name, value in (("index", index), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"shard {name} must be a whole number, not {value!r}")
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: need 1 <= i <= N (shards are counted from 1)")
    if durations is not None:
        bins = plan_shards(items, count, durations, root=root)
        return bins[index - 1] if index <= len(bins) else []
    units = sorted(units_of(items, root), key=lambda u: file_order(u[0]))
    mine = [i for k, unit in enumerate(units) if k % count == index - 1 for i in unit]
    return sorted(mine, key=file_order)


def fingerprint(items: Iterable[Item]) -> str:
    """16 hex digits of sha256 over the selection's sorted locations and names: equal on every shard of
    one selection, whatever each shard runs."""
    lines = sorted(f"{i.location}\t{i.name.strip()}" for i in items)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


def shard_meta(index: int, count: int, items_of_shard: Sequence[Item], all_items: Sequence[Item],
               engine: str | None) -> dict:
    """summary.json["shard"] of one shard: which shard of how many, the selection's fingerprint and size,
    the scenarios planned for it, and the engine (DOCKER_HOST, context or 'local') it ran on."""
    return {"index": index, "count": count, "fingerprint": fingerprint(all_items), "selection_size": len(all_items),
            "planned": [{"feature": i.feature, "scenario": i.name, "location": i.location, "tags": list(i.tags)}
                        for i in items_of_shard],
            "engine": engine}
