"""index.html from its template: verdict and reasons, metadata, totals, failure bundles with pictures, soaks,
and the page an environment failure (exit 2) leaves."""
import json
import signal
from html.parser import HTMLParser
from pathlib import Path

from harness import report, report_html, runner
from harness.errors import EnvironmentSetupError

PNG = bytes.fromhex("89504e470d0a1a0a")  # a PNG signature is enough for a link target
IMAGES = {"apiary/orchestrator": "sha256:aaa111", "apiary/worker-manager": "sha256:bbb222",
          "apiary/mock-worker": "sha256:ccc333"}
META = {"run_id": "20261201-000000-abcd", "seed": 4242, "git_revision": "6b9c851-dirty", "backend": "docker",
        "compose": "/work/main/.tools/docker-compose", "images": IMAGES, "timings": {"up_s": 7.84},
        "tags": ["@smoke"], "started_at": "2026-12-01T14:24:15+0000", "timeout_multiplier": 1.0}


class Page(HTMLParser):
    """The page's links, pictures, element ids and text."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.images, self.ids, self.classes, self.text = [], [], set(), [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.links.append(a.get("href"))
        if tag == "img":
            self.images.append(a.get("src"))
        if a.get("id"):
            self.ids.add(a["id"])
        if a.get("class"):
            self.classes.append((tag, a["class"]))

    def handle_data(self, data):
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def scenario(name, tags, status, **extra):
    return {"feature": "F", "scenario": name, "location": f"features/f.feature:{len(name)}", "tags": tags,
            "status": status, "duration_s": 0.5, "elapsed_s": 1.25, **extra}


def summary(rows, gate, code, **extra):
    s = report.summarize(rows, dict(META, **extra))
    s.update(gate=gate, exit_code=code, soaks=extra.get("soaks", []))
    return s


def bundle(run_dir: Path, rel: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (run_dir / rel / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / rel / name).write_bytes(data)


def test_a_passed_run_shows_green_verdict_metadata_and_totals(tmp_path):
    s = summary([scenario("a", ["p0", "smoke"], "passed"), scenario("b", ["p1"], "passed")],
                {"passed": True, "reasons": []}, 0)
    (tmp_path / "report.html").write_text("x")
    page = Page(report_html.write_index(tmp_path, s).read_text())
    assert ("div", "banner pass") in page.classes and "PASS" in page.words and "FAIL" not in page.words
    assert "gate holds" in page.words and "failures" not in page.ids
    for value in ("4242", "6b9c851-dirty", "docker", "/work/main/.tools/docker-compose", "7.84 s", *IMAGES.values()):
        assert value in page.words, value
    assert "@p0 1 1 0 0" in page.words and "@p1 1 1 0 0" in page.words and "@smoke 1 1 0 0" in page.words
    assert "report.html" in page.links and "behave.json" not in page.links   # only files that exist are linked


def test_a_failed_run_shows_reasons_error_every_bundle_file_and_the_timeline(tmp_path):
    rel = "failures/Chaos-feature/A-partition-heals"
    files = {"failure.txt": b"boom", "logs/orchestrator.log": b"log", "timeline.png": PNG, "faults.jsonl": b"{}"}
    bundle(tmp_path, rel, files)
    fail = {"feature": "F", "scenario": "heals", "status": "failed", "bundle": rel,
            "step": "Then every job finished", "error": "ASSERT FAILED: 3 jobs lost <script>x</script>"}
    rows = report.merge([scenario("heals", ["p0", "chaos"], "failed"), scenario("ok", ["p0"], "passed")], [fail], [])
    reasons = ["@p0 must pass entirely: 1 failed ('heals'...)", "1 scenario(s) failed"]
    text = report_html.write_index(tmp_path, summary(rows, {"passed": False, "reasons": reasons}, 1)).read_text()
    page = Page(text)
    assert ("div", "banner fail") in page.classes and "gate FAILS" in page.words
    assert all(r in page.words for r in reasons)
    assert "Then every job finished" in page.words and "ASSERT FAILED: 3 jobs lost" in page.words
    assert "<script>x</script>" not in text and "&lt;script&gt;" in text     # errors are escaped
    for name in files:
        assert f"{rel}/{name}" in page.links, name
    assert all((tmp_path / h).exists() for h in page.links if h and not h.endswith("/"))
    assert page.images == [f"{rel}/timeline.png"]
    assert "@p0 2 1 1 0" in page.words


def test_a_soak_shows_its_checks_and_timeline(tmp_path):
    bundle(tmp_path, "soak", {"timeline.png": PNG, "verdict.json": b"{}"})
    soak = {"name": "soak", "seed": 7, "profile": "selftest", "passed": False, "dir": "soak", "timeline": "timeline.png",
            "verdict": {"valid": False}, "checks": {"checker": {"passed": False, "detail": "verdict False: 7 anomalies"}},
            "latency_ms": {"p50": 122.2, "p99": 2253.4}}
    s = summary([scenario("soak seed 7: checker", ["soak", "p1"], "failed")],
                {"passed": False, "reasons": ["1 scenario(s) failed"]}, 1, mode="soak", soaks=[soak])
    page = Page(report_html.write_index(tmp_path, s).read_text())
    assert "soak/timeline.png" in page.images and "soak/verdict.json" in page.links
    assert "FAILED checker: verdict False: 7 anomalies" in page.words and "seed 7, profile selftest" in page.words


def test_an_environment_failure_page_names_what_failed(tmp_path):
    s = {**META, "exit_code": 2, "environment_error": "build failed",
         "detail": "scripts/build-images.sh exited 1 (full log build.log):\nE: no space left"}
    (tmp_path / "build.log").write_text("E: no space left\n")
    page = Page(report_html.write_index(tmp_path, s).read_text())
    assert ("div", "banner env") in page.classes and "ENVIRONMENT FAILURE" in page.words
    assert "Environment failure: build failed" in page.words and "E: no space left" in page.words
    assert "build.log" in page.links and "4242" in page.words and "gate" not in page.ids


def test_a_template_error_still_leaves_a_page_with_the_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(report_html, "TEMPLATES", tmp_path / "no-templates")
    text = report_html.write_index(tmp_path, {**META, "exit_code": 1, "gate": {"reasons": ["1 scenario(s) failed"]}}).read_text()
    assert "FAIL" in text and "1 scenario(s) failed" in text and "TemplateNotFound" in text


def test_the_runner_writes_index_html_when_it_exits_2(tmp_path, monkeypatch):
    class NoReaper:
        def __init__(self, *_):
            pass

        def release(self, keep=False):
            pass

    def no_engine(args, meta):
        raise EnvironmentSetupError("no Docker engine", "docker.sock: connection refused")

    monkeypatch.setattr("apiary_suite.reaper.Reaper", NoReaper)
    monkeypatch.setattr(runner, "choose_backend", no_engine)
    monkeypatch.setattr(runner, "git_revision", lambda: "abc123")
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        code = runner.main(["--backend", "docker", "--report-dir", str(tmp_path)])
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert code == runner.EXIT_ENV
    run_dir = (tmp_path / "latest").resolve()
    assert json.loads((run_dir / "summary.json").read_text())["environment_error"] == "no Docker engine"
    page = Page((run_dir / "index.html").read_text())
    assert "ENVIRONMENT FAILURE" in page.words and "docker.sock: connection refused" in page.words

