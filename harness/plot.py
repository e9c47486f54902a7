"""Timeline picture of one run: request latency by outcome above, fault bands per target below, events as marks.

Reads History ops (harness/history.py). Client ops are every invoke/completion pair whose process is not
"nemesis"; nemesis ops are f "start"/"stop" with the invoke value {kind, target, params, index}. A band runs
from a start's invoke to the matching stop's completion (to the plot's end if never stopped), and is hatched
when the start's completion did not say {"verified": true}; a start that failed (apply raised) ends at its
completion. Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch); PNG or SVG by the
path's suffix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from harness.stats import percentile

NEMESIS = "nemesis"
OUTCOME_COLOURS = {"ok": "#2ca02c", "fail": "#d62728", "info": "#ff7f0e"}
OUTCOME_LABELS = {"ok": "ok", "fail": "fail", "info": "indeterminate (info)", "open": "never completed"}
KIND_COLOURS = {"partition": "#1f77b4", "loss": "#17becf", "pause": "#9467bd", "kill": "#d62728",
                "restart": "#ff7f0e", "oom": "#8c564b", "storage-read-only": "#bcbd22",
                "storage-corrupt": "#e377c2", "latency": "#aec7e8", "bandwidth": "#ffbb78", "slicer": "#c5b0d5",
                "slow_close": "#c49c94", "limit_data": "#f7b6d2", "reset_peer": "#ff9896", "blackhole": "#393b79"}
EVENT_COLOURS = ("#000000", "#377eb8", "#a65628", "#984ea3", "#f781bf", "#999999", "#66c2a5")  # no red/green
DPI = 110
LOG_RANGE = 50.0            # latency max/min above this -> log y axis
PERCENTILE_MIN_POINTS = 2000  # from this many requests on, p50/p99 lines are drawn over the dots
DENSE_EVENTS = 40           # more events than this -> thinner, fainter marks so the data stays visible


def _completions_by_invoke(ops: list[dict]) -> dict[int, dict]:
    """Map an invoke's index to its completion op."""
    return {op["invoke_index"]: op for op in ops if op.get("type") != "invoke" and "invoke_index" in op}


def end_time(ops: list[dict], events: Iterable[dict] | None = None) -> float:
    """Return the latest time any op or event carries (0 when none)."""
    times = [float(op["time"]) for op in ops if isinstance(op.get("time"), (int, float))]
    times += [float(ev["time"]) for ev in events or () if isinstance(ev.get("time"), (int, float))]
    return max(times, default=0.0)


def latency_points(ops: list[dict]) -> list[dict]:
    """Return one {time, latency, outcome} per client invoke; outcome "open" when it never completed."""
    done = _completions_by_invoke(ops)
    end = end_time(ops)
    points = []
    for op in ops:
        if op.get("type") != "invoke" or op.get("process") == NEMESIS or "time" not in op:
            continue
        comp = done.get(op.get("index"))
        if comp is None:
            points.append({"time": op["time"], "latency": max(end - op["time"], 0.0), "outcome": "open"})
            continue
        latency = comp.get("latency")
        if not isinstance(latency, (int, float)):
            latency = comp.get("time", op["time"]) - op["time"]
        points.append({"time": op["time"], "latency": max(float(latency), 0.0),
                       "outcome": comp.get("type") if comp.get("type") in OUTCOME_COLOURS else "info"})
    return points


def fault_bands(ops: list[dict], until: float | None = None) -> list[dict]:
    """Return one {target, kind, index, start, end, verified, stopped, failed} per nemesis start invoke, by start."""
    done = _completions_by_invoke(ops)
    until = end_time(ops) if until is None else until
    stops: dict[Any, float] = {}
    for op in ops:
        if op.get("process") == NEMESIS and op.get("f") == "stop" and op.get("type") == "invoke":
            value = op.get("value") if isinstance(op.get("value"), dict) else {}
            key = value.get("index", (value.get("kind"), value.get("target")))
            comp = done.get(op.get("index"))
            stops.setdefault(key, comp["time"] if comp else op["time"])
    bands = []
    for op in ops:
        if op.get("process") != NEMESIS or op.get("f") != "start" or op.get("type") != "invoke":
            continue
        value = op.get("value") if isinstance(op.get("value"), dict) else {}
        key = value.get("index", (value.get("kind"), value.get("target")))
        comp = done.get(op.get("index"))
        verified = bool(comp and comp.get("type") == "ok" and isinstance(comp.get("value"), dict)
                        and comp["value"].get("verified") is True)
        failed = bool(comp and comp.get("type") == "fail")       # apply raised: nothing to heal later
        stop = stops.pop(key, None)
        if stop is None and failed:
            stop = comp["time"]
        bands.append({"target": str(value.get("target", "?")), "kind": str(value.get("kind", "?")),
                      "index": value.get("index"), "start": float(op["time"]),
                      "end": float(stop if stop is not None else max(until, op["time"])),
                      "verified": verified, "stopped": stop is not None, "failed": failed})
    return sorted(bands, key=lambda b: (b["start"], b["target"]))


def band_rows(bands: list[dict]) -> list[str]:
    """Return the row order of the fault panel: each target once, sorted by name (top to bottom)."""
    return sorted({b["target"] for b in bands})


def _event_label(event: dict) -> str:
    """Return an event's legend label (label, else topic, else "event")."""
    return str(event.get("label") or event.get("topic") or "event")


def _draw_percentiles(ax: Any, points: list[dict], buckets: int = 120) -> None:
    """Overlay p50 and p99 latency (nearest rank, harness.stats) per time bucket when there are too many points."""
    if len(points) < PERCENTILE_MIN_POINTS:
        return
    import numpy as np
    times = np.array([p["time"] for p in points])
    lat = np.array([p["latency"] for p in points])
    edges = np.linspace(times.min(), times.max() + 1e-9, buckets + 1)
    which = np.digitize(times, edges) - 1
    mids, p50, p99 = [], [], []
    for b in range(buckets):
        chunk = lat[which == b]
        if chunk.size:
            mids.append((edges[b] + edges[b + 1]) / 2)
            p50.append(float(percentile(chunk.tolist(), 50)))
            p99.append(float(percentile(chunk.tolist(), 99)))
    ax.plot(mids, p50, color="black", linewidth=1.5, label="p50", zorder=4)
    ax.plot(mids, p99, color="#08306b", linewidth=1.5, linestyle="-.", label="p99", zorder=4)


def _draw_latency(ax: Any, points: list[dict]) -> None:
    """Scatter latency against invoke time, one colour per outcome; log scale when the range is wide."""
    if not points:
        ax.text(0.5, 0.5, "no client operations", transform=ax.transAxes, ha="center", va="center")
        return
    alpha = 0.35 if len(points) >= PERCENTILE_MIN_POINTS else 0.7
    for outcome in ("ok", "fail", "info", "open"):
        pts = [p for p in points if p["outcome"] == outcome]
        if pts:
            marker, colour = ("x", OUTCOME_COLOURS["info"]) if outcome == "open" else ("o", OUTCOME_COLOURS[outcome])
            ax.scatter([p["time"] for p in pts], [p["latency"] for p in pts], s=9 if outcome == "open" else 5,
                       c=colour, marker=marker, alpha=alpha, linewidths=0.8 if outcome == "open" else 0,
                       label=f"{OUTCOME_LABELS[outcome]} ({len(pts)})", rasterized=True, zorder=3)
    _draw_percentiles(ax, points)
    positive = [p["latency"] for p in points if p["latency"] > 0]
    if positive and max(positive) / min(positive) > LOG_RANGE:
        ax.set_yscale("log")
    ax.set_ylabel("latency (s)" + (", log" if ax.get_yscale() == "log" else ""))
    ax.grid(True, alpha=0.3)


def _draw_bands(ax: Any, bands: list[dict], span: float) -> list[str]:
    """Draw fault intervals, one row per target; label a band with its kind when it is wide enough."""
    rows = band_rows(bands)
    if not rows:
        ax.text(0.5, 0.5, "no faults", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
        return rows
    y_of = {t: len(rows) - 1 - i for i, t in enumerate(rows)}
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for band in bands:                       # one broken_barh call per look: fast for 1000s of bands
        width = max(band["end"] - band["start"], span * 0.002)
        look = (band["target"], band["kind"], band["verified"], band["stopped"])
        groups.setdefault(look, []).append((band["start"], width))
        if width >= span * 0.03:
            ax.text(band["start"] + width / 2, y_of[band["target"]], band["kind"], ha="center", va="center",
                    fontsize=7, color="white" if band["verified"] else "black", clip_on=True, zorder=5)
    for (target, kind, verified, stopped), spans in groups.items():
        colour = KIND_COLOURS.get(kind, "#7f7f7f")
        ax.broken_barh(spans, (y_of[target] - 0.38, 0.76), facecolors=colour, alpha=0.9 if verified else 0.5, zorder=3,
                       hatch=None if verified else "////", edgecolor=colour if stopped else "black",
                       linewidth=0.6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(list(reversed(rows)), fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.grid(True, axis="x", alpha=0.3)
    return rows


def _legend_for_bands(ax: Any, bands: list[dict]) -> None:
    """Add one legend entry per fault kind drawn, plus one for unverified (hatched) bands."""
    from matplotlib.patches import Patch
    kinds = sorted({b["kind"] for b in bands})
    handles = [Patch(facecolor=KIND_COLOURS.get(k, "#7f7f7f"), label=k) for k in kinds]
    if any(not b["verified"] for b in bands):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="////", label="not verified"))
    if any(not b["stopped"] for b in bands):
        handles.append(Patch(facecolor="white", edgecolor="black", label="never healed (to end)"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)


def _draw_events(axes: list[Any], events: list[dict]) -> list[Any]:
    """Draw each event as a vertical line on every panel; return one legend handle per label."""
    from matplotlib.lines import Line2D
    labels = sorted({_event_label(e) for e in events})
    colour = {label: EVENT_COLOURS[i % len(EVENT_COLOURS)] for i, label in enumerate(labels)}
    dense = len(events) > DENSE_EVENTS
    for label in labels:
        times = [e["time"] for e in events if _event_label(e) == label and isinstance(e.get("time"), (int, float))]
        for ax in axes:
            ax.vlines(times, 0, 1, transform=ax.get_xaxis_transform(), colors=colour[label], zorder=1,
                      linewidth=0.5 if dense else 0.9, alpha=0.25 if dense else 0.8, linestyles="--")
    counts = {label: sum(1 for e in events if _event_label(e) == label) for label in labels}
    return [Line2D([], [], color=colour[label], linestyle="--", label=f"{label} ({counts[label]})")
            for label in labels]


def figure(ops: Iterable[dict], title: str = "", events: list[dict] | None = None) -> Any:
    """Build the timeline as a matplotlib Figure (Agg canvas) without saving it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise RuntimeError("harness.plot needs matplotlib (requirements/dev.txt)") from exc
    ops, events = list(ops), list(events or [])
    if not ops:
        fig = Figure(figsize=(8, 3), dpi=DPI)
        FigureCanvasAgg(fig)
        fig.text(0.5, 0.5, "no operations", ha="center", va="center", fontsize=16)
        fig.suptitle(title or "timeline")
        return fig
    span = max(end_time(ops, events), 1e-3)
    points, bands = latency_points(ops), fault_bands(ops, span)
    rows = max(len(band_rows(bands)), 1)
    fig = Figure(figsize=(14, 4.2 + 0.32 * rows + 0.8), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[4.2, 0.32 * rows + 0.4], hspace=0.08)
    top = fig.add_subplot(grid[0])
    bottom = fig.add_subplot(grid[1], sharex=top)
    _draw_latency(top, points)
    _draw_bands(bottom, bands, span)
    handles = _draw_events([top, bottom], events)
    top_handles, _ = top.get_legend_handles_labels()
    if top_handles or handles:
        top.legend(handles=top_handles + handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7,
                   frameon=False, markerscale=2)
    _legend_for_bands(bottom, bands)
    top.tick_params(labelbottom=False)
    bottom.set_xlim(0, span * 1.01)
    bottom.set_xlabel("time since run start (s)")
    fig.suptitle(title or "timeline", x=0.45)
    fig.subplots_adjust(left=0.13, right=0.84, top=0.93, bottom=0.7 / fig.get_figheight())
    return fig


def timeline(ops: list[dict], path: str | Path, title: str = "", events: list[dict] | None = None) -> Path:
    """Render the run's timeline to path (.png or .svg) and return the path."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"{path}: timeline plots are .png or .svg")
    fig = figure(ops, title, events)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format=path.suffix.lower()[1:])
    return path
