"""Timeline plot: renders PNG/SVG from a crafted history, bands one row per target, empty input, outcomes."""
import pytest

from harness.history import History
from harness.plot import band_rows, fault_bands, figure, latency_points, timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def crafted(latencies=(0.02, 0.05, 3.0)):
    """Return ops: 3 faults (one unverified, one never stopped), client ops of every outcome, one never done."""
    ops = []

    def add(**op):
        op["index"] = len(ops)
        ops.append(op)
        return op
    faults = [("partition", "hive-a|worker-a1", 2.0, 6.0, True), ("kill", "worker-b2", 3.0, 9.0, False),
              ("loss", "orchestrator|hive-b", 10.0, None, True)]
    for i, (kind, target, start, stop, verified) in enumerate(faults):
        inv = add(process="nemesis", type="invoke", f="start", time=start,
                  value={"kind": kind, "target": target, "params": {}, "index": i})
        add(process="nemesis", type="ok", f="start", time=start + 0.1, invoke_index=inv["index"],
            value={"verified": verified}, latency=0.1)
        if stop is not None:
            s = add(process="nemesis", type="invoke", f="stop", time=stop, value={"index": i})
            add(process="nemesis", type="ok", f="stop", time=stop + 0.25, invoke_index=s["index"], value={})
    for k in range(150):
        t = k * 0.1
        inv = add(process=f"tenant-a:{k % 3}", type="invoke", f="complete", time=t)
        if k == 149:
            continue                                           # never completed
        lat = latencies[k % len(latencies)]
        outcome = "ok" if k % 10 else ("fail" if k % 20 else "info")
        add(process=inv["process"], type=outcome, f="complete", time=t + lat, latency=lat,
            invoke_index=inv["index"])
    return ops


EVENTS = [{"time": 2.6, "topic": "worker.lost"}, {"time": 7.1, "label": "recovered"},
          {"time": 9.5, "topic": "worker.registered"}]


def test_renders_a_valid_png_over_5_kb(tmp_path):
    path = timeline(crafted(), tmp_path / "run" / "timeline.png", "soak seed=7", EVENTS)
    data = path.read_bytes()
    assert path.exists() and data[:8] == PNG_MAGIC and len(data) > 5 * 1024


def test_renders_svg_by_suffix_and_rejects_others(tmp_path):
    text = timeline(crafted(), tmp_path / "t.svg", events=EVENTS).read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    with pytest.raises(ValueError, match=".png or .svg"):
        timeline(crafted(), tmp_path / "t.jpg")


def test_empty_input_writes_a_figure_saying_no_operations(tmp_path):
    path = timeline([], tmp_path / "empty.png", "nothing ran")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert "no operations" in [t.get_text() for t in figure([]).texts]


def test_band_rows_equal_the_fault_targets_and_the_drawn_rows():
    ops = crafted()
    bands = fault_bands(ops)
    targets = {op["value"]["target"] for op in ops if op["process"] == "nemesis" and op["f"] == "start"
               and op["type"] == "invoke"}
    assert set(band_rows(bands)) == targets and len(band_rows(bands)) == 3
    bottom = figure(ops, events=EVENTS).axes[1]
    assert [t.get_text() for t in bottom.get_yticklabels()] == list(reversed(band_rows(bands)))


def test_band_intervals_verified_flags_and_open_ends():
    ops = crafted()
    by_target = {b["target"]: b for b in fault_bands(ops)}
    part, kill, loss = by_target["hive-a|worker-a1"], by_target["worker-b2"], by_target["orchestrator|hive-b"]
    assert (part["start"], part["end"], part["verified"], part["stopped"]) == (2.0, 6.25, True, True)
    assert (kill["start"], kill["end"], kill["verified"]) == (3.0, 9.25, False)
    end = max(op["time"] for op in ops)
    assert loss["stopped"] is False and loss["end"] == end and loss["kind"] == "loss"


def test_a_start_without_completion_is_unverified_and_a_stray_stop_ends_nothing():
    ops = [{"index": 0, "process": "nemesis", "type": "invoke", "f": "start", "time": 1.0,
            "value": {"kind": "pause", "target": "worker-a1", "params": {}, "index": 0}},
           {"index": 1, "process": "nemesis", "type": "invoke", "f": "stop", "time": 2.0, "value": {"index": 5}},
           {"index": 2, "process": "tenant-a:0", "type": "invoke", "f": "complete", "time": 4.0}]
    (band,) = fault_bands(ops)
    assert band["verified"] is False and band["stopped"] is False and band["end"] == 4.0


def test_a_failed_apply_ends_at_its_completion_not_at_the_plot_end():
    ops = [{"index": 0, "process": "nemesis", "type": "invoke", "f": "start", "time": 1.0,
            "value": {"kind": "kill", "target": "hive-b", "params": {}, "index": 0}},
           {"index": 1, "process": "nemesis", "type": "fail", "f": "start", "time": 1.4, "invoke_index": 0,
            "value": {"verified": False, "error": "boom"}},
           {"index": 2, "process": "tenant-a:0", "type": "invoke", "f": "complete", "time": 9.0}]
    (band,) = fault_bands(ops)
    assert (band["end"], band["failed"], band["verified"]) == (1.4, True, False)


def test_latency_points_carry_each_outcome():
    points = latency_points(crafted())
    assert {p["outcome"] for p in points} == {"ok", "fail", "info", "open"}
    assert len(points) == 150 and all(p["latency"] >= 0 for p in points)


def test_log_scale_only_when_the_latency_range_is_wide():
    assert figure(crafted((0.01, 2.0))).axes[0].get_yscale() == "log"
    assert figure(crafted((0.04, 0.05))).axes[0].get_yscale() == "linear"


def test_real_history_ops_render(tmp_path):
    h = History()
    a = h.invoke("nemesis", "start", {"kind": "pause", "target": "worker-a2", "params": {}, "index": 0})
    h.complete(a, "ok", {"verified": True})
    r = h.invoke("tenant-b:1", "complete", {"prompt": "x"})
    h.complete(r, "ok", {"text": "y"}, job_id="j1")
    s = h.invoke("nemesis", "stop", {"kind": "pause", "target": "worker-a2", "index": 0})
    h.complete(s, "ok", {})
    assert band_rows(fault_bands(h.ops)) == ["worker-a2"]
    assert timeline(h.ops, tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC


def test_every_generated_fault_kind_has_a_colour_of_its_own():
    from harness.nemesis.generator import DEFAULT_KINDS
    from harness.plot import KIND_COLOURS
    missing = [k for k in DEFAULT_KINDS if k not in KIND_COLOURS]
    assert not missing, f"drawn in the fallback grey: {missing}"
    colours = [KIND_COLOURS[k] for k in DEFAULT_KINDS]
    assert len(set(colours)) == len(colours), "two kinds share a colour"
