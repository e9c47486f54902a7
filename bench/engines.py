"""Shipping images to a fresh Docker engine (`python -m bench.engines`): writes reports/bench/engines.json.

Each run starts a fresh LocalEngine (harness/engines.py: a second dockerd on this machine) and ships the three
service images (apiary/orchestrator, apiary/worker-manager, apiary/mock-worker, tag $APIARY_IMAGE_TAG or
local) from the default engine with `docker save | docker load`, in two ways, each on an engine of its own:
- per_image: one stream per image, so each image's seconds are its own (shared layers travel every time);
- one_stream: all three in one tarball (shared layers travel once), what the harness does.
Figures per way: engine start, seconds per image, total seconds, MB streamed and MB/s; medians over --runs
(3 by default), the order of the two ways alternating between runs. The default engine is only read.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.common import machine_info
from harness import engines, local_engine

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("apiary/orchestrator", "apiary/worker-manager", "apiary/mock-worker")
MODES = ("per_image", "one_stream")


def one_run(refs: list[str], mode: str, deadline_s: float) -> dict:
    """A fresh engine, the refs shipped to it one way, the engine stopped: its figures."""
    with local_engine.LocalEngine() as eng:
        shipped = engines.ship_images(None, eng.url, refs, deadline_s=deadline_s, one_stream=mode == "one_stream")
        start_s = eng.start_s
        began = time.monotonic()
    problems = eng.problems
    return {"mode": mode, "engine_start_s": start_s, "engine_stop_s": round(time.monotonic() - began, 3),
            "image_s": {ref: shipped[ref] for ref in refs}, "total_s": shipped["total_s"],
            "mb": round(shipped["bytes"] / 1e6, 1), "mb_per_s": round(shipped["bytes"] / 1e6 / shipped["total_s"], 1),
            "streams": shipped["streams"], "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "cleanup_problems": problems}


def medians(samples: list[dict], refs: list[str]) -> dict:
    """Median of each figure over the runs of one way."""
    def med(key: str) -> float:
        return round(statistics.median(s[key] for s in samples), 3)
    return {"engine_start_s": med("engine_start_s"), "engine_stop_s": med("engine_stop_s"), "total_s": med("total_s"),
            "mb": med("mb"), "mb_per_s": med("mb_per_s"),
            "image_s": {ref: round(statistics.median(s["image_s"][ref] for s in samples), 3) for ref in refs}}


def measure(runs: int, deadline_s: float) -> dict:
    """Every run, both ways; medians per way and one_stream's speed-up over per_image."""
    machine = machine_info()                  # before the runs: its loadavg_start is the load they met
    tag = os.environ.get("APIARY_IMAGE_TAG", "local")
    refs = [f"{name}:{tag}" for name in SERVICES]
    ids = engines.image_ids(None, refs)
    absent = [ref for ref, image_id in ids.items() if image_id is None]
    if absent:
        raise SystemExit(f"bench.engines: not built on the default engine: {', '.join(absent)} "
                         "(run scripts/build-images.sh first)")
    client = engines.engine_client(None, 30)
    sizes = {ref: round(client.images.get(ref).attrs["Size"] / 1e6, 1) for ref in refs}
    samples: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for i in range(runs):
        for mode in (MODES if i % 2 == 0 else MODES[::-1]):
            samples[mode].append(one_run(refs, mode, deadline_s))
            print(json.dumps(samples[mode][-1]), flush=True)
    result = {"machine": machine, "default_engine": engines.describe_engine(None), "runs": runs,
              "images": refs, "image_ids": ids, "image_size_mb": sizes, "samples": samples,
              "median": {mode: medians(samples[mode], refs) for mode in MODES}}
    per, one = result["median"]["per_image"]["total_s"], result["median"]["one_stream"]["total_s"]
    result["one_stream_speedup"] = round(per / one, 2) if one else None
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="fresh engines per way (medians reported)")
    p.add_argument("--deadline", type=float, default=300, help="seconds one shipping may take")
    p.add_argument("--out", default=str(ROOT / "reports" / "bench" / "engines.json"))
    args = p.parse_args()
    result = measure(args.runs, args.deadline)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({"median": result["median"], "one_stream_speedup": result["one_stream_speedup"]}, indent=1))
    print(f"written {out}")
    return 1 if any(s["cleanup_problems"] for mode in MODES for s in result["samples"][mode]) else 0


if __name__ == "__main__":
    sys.exit(main())
