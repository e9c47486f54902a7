"""Shrink a failing fault schedule: Zeller's ddmin over its faults, then halve the durations that remain.

`still_fails(schedule)` is the expensive oracle (a full replay). It is always given faults in the original
schedule order, and no subset (same faults, same durations) is ever run twice: results are cached. The
original schedule is assumed to fail (it came from a failing run) unless `confirm=True` replays it first.
The empty schedule is never tried (ddmin's premise: with no faults the check passes).
When ddmin finishes the result is 1-minimal (dropping any one fault makes the check pass, as far as the
oracle said); when max_runs or the deadline cut it short, the result is the smallest failing schedule
found so far and `minimal` is False. An exception from the oracle propagates to the caller.
deadline_s counts seconds from the call. Each step is {size, failed, kept, phase} (phase: confirm, ddmin
or shorten); `reproduced` is None unless confirm=True replayed the original first.
"""
from __future__ import annotations

import time
from typing import Callable

MIN_DURATION_S = 0.5       # shortening never goes below this


class _OutOfBudget(Exception):
    """Raised inside the search when max_runs or the deadline is reached."""


class _Search:
    """The oracle behind a cache, a run counter, a deadline and a step log."""

    def __init__(self, schedule: list[dict], still_fails: Callable[[list[dict]], bool], max_runs: int,
                 deadline_s: float | None, log: Callable[[str], None] | None):
        self.schedule = schedule
        self.still_fails = still_fails
        self.max_runs = max_runs
        self.deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self.log = log or (lambda _line: None)
        self.durations = {i: float(f["duration_s"]) for i, f in enumerate(schedule)}
        self.cache: dict[frozenset, bool] = {}
        self.runs = 0
        self.steps: list[dict] = []

    def build(self, indices: list[int], durations: dict[int, float]) -> list[dict]:
        """Return the faults at indices, in original order, with the given durations."""
        return [dict(self.schedule[i], duration_s=durations[i]) for i in sorted(indices)]

    def fails(self, indices: list[int], durations: dict[int, float] | None = None, phase: str = "ddmin") -> bool:
        """Return whether the subset fails, from the cache or by one oracle run (raises when out of budget)."""
        durations = durations or self.durations
        key = frozenset((i, round(durations[i] * 1000)) for i in indices)
        if key in self.cache:
            return self.cache[key]
        if self.runs >= self.max_runs:
            raise _OutOfBudget(f"max_runs {self.max_runs} reached")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _OutOfBudget("deadline reached")
        self.runs += 1
        failed = bool(self.still_fails(self.build(indices, durations)))
        self.cache[key] = failed
        self.steps.append({"size": len(indices), "failed": failed, "kept": False, "phase": phase})
        self.log(f"shrink run {self.runs}: {phase} {len(indices)} fault(s) -> {'fails' if failed else 'passes'}")
        return failed

    def keep(self) -> None:
        """Mark the last run as adopted (the search moved to it)."""
        if self.steps:
            self.steps[-1]["kept"] = True


def _split(items: list[int], n: int) -> list[list[int]]:
    """Split items into n contiguous, nearly equal, non-empty chunks."""
    size, extra = divmod(len(items), n)
    chunks, at = [], 0
    for k in range(n):
        step = size + (1 if k < extra else 0)
        chunks.append(items[at:at + step])
        at += step
    return [c for c in chunks if c]


def _ddmin(search: _Search, state: dict) -> None:
    """Reduce state["indices"] to a 1-minimal failing subset (Zeller & Hildebrandt 2002), in place."""
    n = 2
    while len(state["indices"]) >= 2:
        current = state["indices"]
        chunks = _split(current, min(n, len(current)))
        moved = False
        for chunk in chunks:                                   # reduce to a subset
            if search.fails(chunk):
                search.keep()
                state["indices"], n, moved = chunk, 2, True
                break
        if not moved and len(chunks) > 2:
            for chunk in chunks:                               # reduce to a complement
                drop = set(chunk)
                rest = [i for i in current if i not in drop]
                if search.fails(rest):
                    search.keep()
                    state["indices"], n, moved = rest, max(len(chunks) - 1, 2), True
                    break
        if not moved:
            if len(chunks) >= len(current):
                return                                         # every single fault was tried: 1-minimal
            n = min(len(current), 2 * len(chunks))


def _shorten(search: _Search, state: dict, floor_s: float) -> None:
    """Halve each remaining fault's duration (not below floor_s) while the schedule still fails."""
    for i in list(state["indices"]):
        while state["durations"][i] > floor_s:
            trial = dict(state["durations"])
            trial[i] = max(floor_s, round(state["durations"][i] / 2, 3))
            if not search.fails(state["indices"], trial, phase="shorten"):
                break
            search.keep()
            state["durations"] = trial


def shrink(schedule: list[dict], still_fails: Callable[[list[dict]], bool], max_runs: int = 64,
           deadline_s: float | None = None, shorten: bool = True, log: Callable[[str], None] | None = None,
           floor_s: float = MIN_DURATION_S, confirm: bool = False) -> dict:
    """Return {schedule, runs, steps, minimal, original_size, reproduced} for a failing schedule (see module doc)."""
    if max_runs < 0:
        raise ValueError(f"max_runs must be >= 0, not {max_runs}")
    search = _Search(list(schedule), still_fails, max_runs, deadline_s, log)
    state = {"indices": list(range(len(schedule))), "durations": dict(search.durations)}
    minimal, reproduced = True, None
    try:
        if confirm:
            reproduced = search.fails(state["indices"], phase="confirm")
            if reproduced:
                search.keep()
        if reproduced is not False:
            _ddmin(search, state)
            if shorten:
                _shorten(search, state, floor_s)
    except _OutOfBudget as exc:
        minimal = False
        search.log(f"shrink stopped early: {exc}; keeping the smallest failing schedule found")
    if reproduced is False:
        minimal = False
        search.log("shrink: the original schedule did not fail on replay; nothing to shrink")
    result = search.build(state["indices"], state["durations"])
    search.log(f"shrink done: {len(schedule)} -> {len(result)} fault(s) in {search.runs} run(s)"
               f"{'' if minimal else ' (not minimal)'}")
    return {"schedule": result, "runs": search.runs, "steps": search.steps, "minimal": minimal,
            "original_size": len(schedule), "reproduced": reproduced}
