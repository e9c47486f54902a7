"""bench.charts: PNGs from crafted bench JSON, each labelled with the run's date, machine and load."""
import json

from bench import charts

MACHINE = {"date": "2026-12-01T14:43:00+00:00", "nproc": 2, "cpu_model": "AMD EPYC", "python": "3.11.7",
           "loadavg_start": [1.5, 1, 1], "loadavg_end": [2.25, 1, 1]}
SWEEP = {"machine": MACHINE, "command": "python -m bench.e2e_sweep --seconds 4", "seconds_per_rate": 4,
         "stack": {"hives": 2, "workers_per_hive": 2}, "saturated_at_per_s": 400,
         "runs": {"non_streamed": [{"offered_per_s": r, "jobs_per_s": min(r, 250), "latency_ms": {"p50": r / 50, "p99": r / 10}}
                                   for r in (100, 200, 400)],
                  "streamed": [{"offered_per_s": r, "jobs_per_s": min(r, 200), "ttft_ms": {"p50": r / 40, "p99": r / 8}}
                               for r in (100, 200, 400)]}}
TRANSPORT = {"machine": {**MACHINE, "pyzmq": "27.3.0", "libzmq": "4.3.5"}, "repeat": 2,
             "throughput": [{"pattern": "push_pull", "protocol": "tcp", "size": 100, "raw_msgs_per_s": 1_000_000,
                             "apiary_msgs_per_s": 1_100_000, "ratio": 1.1},
                            {"pattern": "pipe", "protocol": "pipe", "size": 1024, "raw_msgs_per_s": 900_000,
                             "apiary_msgs_per_s": 800_000, "ratio": 0.89}]}


def test_charts_are_written_as_png_from_both_jsons(tmp_path):
    (tmp_path / "e2e-sweep.json").write_text(json.dumps(SWEEP))
    (tmp_path / "transport.json").write_text(json.dumps(TRANSPORT))
    assert charts.main(["--bench-dir", str(tmp_path), "--out", str(tmp_path / "img")]) == 0
    for name in ("e2e-latency-vs-load.png", "transport-throughput.png"):
        data = (tmp_path / "img" / name).read_bytes()
        assert data[:8] == bytes.fromhex("89504e470d0a1a0a") and len(data) > 10_000, name


def test_the_label_names_date_machine_load_and_command():
    text = charts.label(TRANSPORT, "python -m bench.transport")
    for part in ("2026-12-01 14:43 UTC", "2 x AMD EPYC", "Python 3.11.7", "libzmq 4.3.5", "load 1.5 -> 2.2",
                 "python -m bench.transport"):
        assert part in text, part
    assert charts.label(SWEEP, "x").endswith("python -m bench.e2e_sweep --seconds 4")


def test_absent_jsons_draw_nothing_and_fail(tmp_path, capsys):
    assert charts.main(["--bench-dir", str(tmp_path), "--out", str(tmp_path / "img")]) == 1
    assert not (tmp_path / "img").exists() and "is absent" in capsys.readouterr().err
