"""Benchmark charts (`python -m bench.charts`): PNGs under docs/img/ from recorded runs' JSON, each labelled with
the run's date, machine and load average.

* e2e-latency-vs-load.png from reports/bench/e2e-sweep.json (`python -m bench.e2e_sweep`): p50 and p99 latency
  (non-streamed: full response; streamed: time to first token) against offered jobs/s, and jobs/s served;
* transport-throughput.png from reports/bench/transport.json (`python -m bench.transport`): msg/s of raw
  pyzmq / os.pipe next to Apiary's transports, with the Apiary/raw ratio over each pair.
A JSON that is absent is named and its chart skipped (exit 1 when none could be drawn). Offline: matplotlib's
Agg canvas, no pyplot, no fonts or tiles fetched."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "reports" / "bench"
OUT = ROOT / "docs" / "img"
DPI = 110
MODES = {"non_streamed": ("non-streamed (full response)", "#1f77b4"), "streamed": ("streamed (first token)", "#ff7f0e")}
RAW, APIARY = "#7f7f7f", "#2ca02c"


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas (no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def label(report: dict, command: str) -> str:
    """The run's date, machine and load, and the command that measured it."""
    m = report.get("machine") or {}
    load = m.get("loadavg_start") or [None]
    end = m.get("loadavg_end") or [None]
    load_text = f"load {load[0]:.1f} -> {end[0]:.1f}" if load[0] is not None and end[0] is not None else ""
    parts = [str(m.get("date", "date unknown"))[:16].replace("T", " ") + " UTC",
             f"{m.get('nproc', '?')} x {m.get('cpu_model', 'unknown CPU')}", f"Python {m.get('python', '?')}",
             f"pyzmq {m['pyzmq']} / libzmq {m['libzmq']}" if m.get("pyzmq") else "", load_text]
    return " · ".join(p for p in parts if p) + f"\n{report.get('command') or command}"


def e2e_chart(report: dict, path: Path) -> Path:
    """Latency p50/p99 against offered load (log y), and served against offered jobs/s."""
    fig = new_figure(11, 5.2)
    lat, thr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    top = 0.0
    for mode, runs in (report.get("runs") or {}).items():
        name, colour = MODES.get(mode, (mode, None))
        runs = sorted(runs, key=lambda r: r["offered_per_s"])
        x = [r["offered_per_s"] for r in runs]
        figures = [(r.get("ttft_ms") if mode == "streamed" else r.get("latency_ms")) or {} for r in runs]
        for q, style in (("p50", "-o"), ("p99", "--^")):
            lat.plot(x, [f.get(q) for f in figures], style, color=colour, label=f"{name} {q}")
        thr.plot(x, [r.get("jobs_per_s") for r in runs], "-o", color=colour, label=name)
        top = max(top, *x)
    lat.set_yscale("log")
    lat.set_xlabel("offered load (jobs/s, open loop)")
    lat.set_ylabel("latency (ms, log)")
    lat.set_title("latency against offered load")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=8)
    thr.plot([0, top], [0, top], ":", color="#999999", label="served = offered")
    thr.set_xlabel("offered load (jobs/s)")
    thr.set_ylabel("served (ok jobs/s)")
    thr.set_title("throughput" + (f" (saturated at {report['saturated_at_per_s']:.0f}/s offered)"
                                  if report.get("saturated_at_per_s") else ""))
    thr.grid(True, alpha=0.3)
    thr.legend(fontsize=8)
    stack = report.get("stack") or {}
    fig.suptitle(f"bench.e2e_sweep: local stack, {stack.get('hives', '?')} hives x {stack.get('workers_per_hive', '?')} "
                 f"workers, 1-token jobs, {report.get('seconds_per_rate', '?')} s per rate")
    fig.text(0.01, 0.01, label(report, "python -m bench.e2e_sweep"), fontsize=7, color="#555555", va="bottom")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.87, bottom=0.2, wspace=0.25)
    return save(fig, path)


def transport_chart(report: dict, path: Path) -> Path:
    """Grouped bars: raw against Apiary msg/s per pattern, transport and size, the ratio above each pair."""
    rows = report.get("throughput") or []
    fig = new_figure(12, 5.4)
    ax = fig.add_subplot(1, 1, 1)
    xs = range(len(rows))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], [r["raw_msgs_per_s"] for r in rows], width, color=RAW,
           label="raw pyzmq / os.pipe")
    ax.bar([x + width / 2 for x in xs], [r["apiary_msgs_per_s"] for r in rows], width, color=APIARY, label="Apiary")
    for x, r in zip(xs, rows):
        ax.annotate(f"{r['ratio']:.2f}x", (x, max(r["raw_msgs_per_s"], r["apiary_msgs_per_s"])), ha="center",
                    va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{r['pattern'].replace('_', '/')}\n{r['protocol']} {r['size']} B" for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("messages/s (log; median of runs)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.suptitle(f"bench.transport: throughput, raw against Apiary (ratio = median of paired Apiary/raw; "
                 f"{report.get('repeat', '?')} repeat(s))")
    fig.text(0.01, 0.01, label(report, "python -m bench.transport"), fontsize=7, color="#555555", va="bottom")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.86, bottom=0.22)
    return save(fig, path)


def save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


CHARTS = (("e2e-sweep.json", "e2e-latency-vs-load.png", e2e_chart, "python -m bench.e2e_sweep"),
          ("transport.json", "transport-throughput.png", transport_chart, "python -m bench.transport"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench-dir", default=str(BENCH), help="where the JSON figures are (default reports/bench)")
    parser.add_argument("--out", default=str(OUT), help="where the PNGs go (default docs/img)")
    args = parser.parse_args(argv)
    drawn = 0
    for source, name, draw, command in CHARTS:
        src = Path(args.bench_dir) / source
        if not src.exists():
            print(f"skipped {name}: {src} is absent (run `{command}` first)", file=sys.stderr)
            continue
        print(f"wrote {draw(json.loads(src.read_text()), Path(args.out) / name)} from {src}")
        drawn += 1
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main())
