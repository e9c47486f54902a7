"""Pure helpers of the chaos harness: percentiles, latency summaries, raw HTTP parsing, metrics file, VmRSS."""
import json

import pytest

from apiary_suite.load import dechunk, latency_summary, parse_http_response, percentile, write_metrics
from apiary_suite.resources import growth, parse_vmrss_kib


def test_percentile_nearest_rank():
    data = [float(i) for i in range(1, 101)]
    assert percentile(data, 50) == 50.0
    assert percentile(data, 99) == 99.0
    assert percentile(data, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(data, 101)


def test_latency_summary_fields():
    s = latency_summary([0.1, 0.2, 0.3, None])
    assert s["count"] == 3 and s["min"] == 0.1 and s["max"] == 0.3 and s["p50"] == 0.2
    assert latency_summary([])["p99"] is None


def test_parse_http_response_content_length_and_headers():
    raw = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\n"
           b"X-Apiary-Job-Id: cmpl-1\r\n\r\n{}trailing")
    status, headers, body = parse_http_response(raw)
    assert status == 429 and headers["retry-after"] == "1" and headers["x-apiary-job-id"] == "cmpl-1"
    assert body == b"{}"


def test_parse_http_response_chunked_and_garbage():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=1\r\nefg\r\n0\r\n\r\n"
    assert parse_http_response(raw) == (200, {"transfer-encoding": "chunked"}, b"abcdefg")
    assert parse_http_response(b"no header end") == (None, {}, b"")
    assert parse_http_response(b"HTTP/1.1 abc\r\n\r\n")[0] is None
    assert dechunk(b"zz\r\n") == b""


def test_write_metrics_appends_json_lines(tmp_path, capsys):
    write_metrics(tmp_path, "stress", {"latency_p99_ms": 12.5})
    write_metrics(tmp_path, "memory", {"rss_growth_mib": {"orchestrator": 1.0}})
    lines = [json.loads(x) for x in (tmp_path / "chaos-metrics.jsonl").read_text().splitlines()]
    assert [x["name"] for x in lines] == ["stress", "memory"] and lines[0]["latency_p99_ms"] == 12.5
    assert "[chaos-metrics]" in capsys.readouterr().out
    assert write_metrics(None, "x", {}) is None


def test_vmrss_and_growth():
    assert parse_vmrss_kib("Name:\tpython3\nVmRSS:\t   51234 kB\n") == 51234
    assert parse_vmrss_kib("Name: x\n") is None
    before = {"a": {"rss_mib": 50.0}, "b": {"rss_mib": None}}
    after = {"a": {"rss_mib": 61.5}, "b": {"rss_mib": 3.0}}
    assert growth(before, after) == {"a": 11.5}
