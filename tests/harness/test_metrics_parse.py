"""Prometheus text parsing helpers of the World."""
import pytest

from apiary_suite.world import metric_sum, parse_metrics

TEXT = """# HELP apiary_jobs_total Jobs by outcome
# TYPE apiary_jobs_total counter
apiary_jobs_total{outcome="completed"} 12.0
apiary_jobs_total{outcome="failed"} 1.0
# TYPE apiary_job_latency_seconds histogram
apiary_job_latency_seconds_bucket{le="0.1"} 3.0
apiary_job_latency_seconds_bucket{le="+Inf"} 13.0
apiary_job_latency_seconds_count 13.0
apiary_job_latency_seconds_sum 0.9
"""


def test_parse_and_sum():
    s = parse_metrics(TEXT)
    assert metric_sum(s, "apiary_jobs_total") == 13
    assert metric_sum(s, "apiary_jobs_total", outcome="completed") == 12
    assert metric_sum(s, "apiary_job_latency_seconds_count") == 13
    assert metric_sum(s, "nope") == 0


def test_garbage_does_not_parse():
    with pytest.raises(Exception):
        parse_metrics("apiary_jobs_total{outcome=\"x\" 1\n")
