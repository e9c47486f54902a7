"""bench.tuning: the profile table's columns come from bench.e2e reports, medians and ranges over the runs,
and a bad --profiles name is a usage error that names it."""
import pytest

from bench import tuning


def report(peak: float, p50: float, detect: float | None = None, rss: tuple | None = None) -> dict:
    """A bench.e2e report shaped like the real one, with the parts a profile runs."""
    r = {"peak": {"non_streamed": {"peak_jobs_per_s": peak}, "streamed": {"peak_jobs_per_s": peak / 2}},
         "open_loop": {"non_streamed": {"latency_ms": {"p50": p50, "p99": p50 * 3}, "lost": 1},
                       "streamed": {"ttft_ms": {"p50": p50 / 2, "p99": p50}, "lost": 0}}}
    if detect is not None:
        r["kills"] = {"detection_s": {"p50": detect, "p99": round(detect + 0.1, 3)}}
    if rss is not None:
        r["memory"] = {"services": {"orchestrator": {"before_mib": rss[0], "after_mib": rss[1]}}}
    return r


def test_figures_take_each_column_from_its_part():
    f = tuning.figures(report(1000, 3.5, detect=0.7, rss=(44.0, 49.5)))
    assert f == {"peak_non_streamed": 1000, "peak_streamed": 500, "open_p50_ms": 3.5, "open_p99_ms": 10.5,
                 "ttft_p50_ms": 1.75, "ttft_p99_ms": 3.5, "open_refused": 1, "detect_p50_s": 0.7,
                 "detect_p99_s": 0.8, "rss_before_mib": 44.0, "rss_after_mib": 49.5}
    assert "detect_p50_s" not in tuning.figures(report(1000, 3.5))


def test_summary_is_the_median_and_range_and_the_table_shows_them():
    runs = [tuning.figures(report(p, 3.0, rss=(44.0, a))) for p, a in ((900, 49.0), (1100, 50.0), (1000, 48.0))]
    s = tuning.summarise(runs)
    assert s["peak_non_streamed"] == {"median": 1000, "min": 900, "max": 1100, "n": 3}
    table = tuning.profile_table({"default": s})
    assert "| default | 1000 (900–1100) / 500 (450–550) |" in table
    assert "44 → 49" in table


def test_an_unknown_profile_is_a_usage_error_naming_it(capsys):
    with pytest.raises(SystemExit) as exc:
        tuning.main(["--profiles", "default,turbo"])
    assert exc.value.code == 2
    assert "unknown turbo" in capsys.readouterr().err
