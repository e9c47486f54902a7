"""index.html of a run, from harness/templates/index.html.j2: verdict in colour with the gate's reasons, run
metadata, totals by tag and priority, each failure's error with links to every file of its bundle and its
pictures inline, chaos soaks with their timelines, and the environment failure of a run that exited 2."""
from __future__ import annotations

import html
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.report import FAILED

TEMPLATES = Path(__file__).resolve().parent / "templates"
PICTURES = (".png", ".svg", ".jpg", ".jpeg", ".gif")
REPORT_FILES = (("report.html", "behave HTML report"), ("junit", "JUnit XML"), ("summary.json", "summary.json"),
                ("behave.json", "behave.json"), ("build.log", "image build log"), ("env-error.json", "env-error.json"),
                ("reaper.log", "reaper.log"))
VERDICTS = {0: ("PASS", "pass"), 1: ("FAIL", "fail"), 2: ("ENVIRONMENT FAILURE", "env"),
            130: ("INTERRUPTED (SIGINT)", "env"), 143: ("INTERRUPTED (SIGTERM)", "env")}


def href(rel: str | Path) -> str:
    """A relative link (path parts percent-encoded, slashes kept)."""
    return quote(str(rel).replace("\\", "/"), safe="/")


def list_files(run_dir: Path, rel: str | None) -> list[dict]:
    """Every file under run_dir/rel, sorted: relative path, size, and whether it is a picture."""
    if not rel:
        return []
    base = Path(run_dir) / rel
    if not base.is_dir():
        return []
    out = []
    for p in sorted(q for q in base.rglob("*") if q.is_file()):
        name = str(p.relative_to(base))
        out.append({"name": name, "href": href(Path(rel) / name), "size": p.stat().st_size,
                    "picture": p.suffix.lower() in PICTURES})
    return out


def metadata(summary: dict) -> list[tuple[str, Any]]:
    """(label, value) rows of what the run was: seed, revision, backend, compose, timings, durations."""
    rows: list[tuple[str, Any]] = [
        ("run id", summary.get("run_id")), ("started at", summary.get("started_at")), ("seed", summary.get("seed")),
        ("git revision", summary.get("git_revision")), ("tags", " and ".join(summary.get("tags") or []) or None),
        ("mode", summary.get("mode")), ("backend", summary.get("backend")),
        ("backend fallback", summary.get("backend_fallback")), ("compose", summary.get("compose")),
        ("timeout multiplier", summary.get("timeout_multiplier"))]
    for name, value in (summary.get("timings") or {}).items():
        rows.append((f"timing {name.removesuffix('_s').replace('_', ' ')}", f"{value} s"))
    if summary.get("elapsed_s") is not None:
        rows.append(("scenario wall time", f"{summary['elapsed_s']:.1f} s"))
    if summary.get("duration_s") is not None:
        rows.append(("step time (behave)", f"{summary['duration_s']:.1f} s"))
    rows.append(("run limit", summary.get("run_limit_exceeded")))
    return [(k, v) for k, v in rows if v not in (None, "", [])]


def failures(run_dir: Path, summary: dict) -> list[dict]:
    """Each failed scenario with its error, its bundle's files and the pictures among them."""
    by_key = {(s.get("feature"), s.get("scenario")): s for s in summary.get("scenarios") or []}
    out = []
    for f in summary.get("failures") or []:
        s = by_key.get((f.get("feature"), f.get("scenario")), {})
        files = list_files(run_dir, f.get("bundle"))
        out.append({**f, "location": s.get("location"), "files": files,
                    "bundle_href": href(f["bundle"]) + "/" if f.get("bundle") else None,
                    "pictures": [x for x in files if x["picture"]]})
    return out


def soaks(run_dir: Path, summary: dict) -> list[dict]:
    """Each chaos soak with its checks, its directory's files and its timeline picture."""
    out = []
    for k in summary.get("soaks") or []:
        d = k.get("dir") or ""
        out.append({**k, "files": list_files(run_dir, d) if d else [], "dir_href": href(d) + "/" if d else None,
                    "timeline_href": href(Path(d) / k["timeline"]) if k.get("timeline") else None})
    return out


def context(run_dir: Path, summary: dict) -> dict:
    """Everything the template shows, derived from summary.json and the files in the run dir."""
    code = summary.get("exit_code")
    verdict, css = VERDICTS.get(code, (f"EXIT {code}", "env"))
    gate = summary.get("gate") or {}
    tags = summary.get("by_tag") or {}
    return {"s": summary, "verdict": verdict, "css": css, "code": code, "gate": gate,
            "gate_known": "passed" in gate, "env_error": summary.get("environment_error"),
            "env_detail": summary.get("detail"), "meta": metadata(summary),
            "images": sorted((summary.get("images") or {}).items()), "totals": summary.get("totals"),
            "by_priority": [(p, c) for p, c in (summary.get("by_priority") or {}).items() if c.get("total")],
            "by_tag": sorted(tags.items()), "failures": failures(run_dir, summary), "soaks": soaks(run_dir, summary),
            "scenarios": summary.get("scenarios") or [], "skipped": summary.get("skipped") or [],
            "links": [(href(n), label) for n, label in REPORT_FILES if (Path(run_dir) / n).exists()]}


def render(run_dir: Path, summary: dict) -> str:
    """The page's HTML (jinja2, autoescaped)."""
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(status_class=status_class, href=href)
    return env.get_template("index.html.j2").render(**context(run_dir, summary))


def status_class(status: str | None) -> str:
    """CSS class of a scenario status: pass, fail or skip."""
    return "pass" if status == "passed" else "fail" if status in FAILED else "skip"


def fallback(summary: dict, error: str) -> str:
    """A plain page for when the template cannot be rendered: the verdict and the rendering error."""
    e = html.escape
    code = summary.get("exit_code")
    return (f"<!doctype html><meta charset='utf-8'><title>Apiary run {e(str(summary.get('run_id')))}</title>"
            f"<h1>Run {e(str(summary.get('run_id')))}: {e(VERDICTS.get(code, (f'EXIT {code}',))[0])}</h1>"
            f"<p>{e('; '.join((summary.get('gate') or {}).get('reasons', [])))} {e(str(summary.get('environment_error') or ''))}</p>"
            f"<p>index.html could not be rendered from its template; see <a href='summary.json'>summary.json</a>.</p>"
            f"<pre>{e(error)}</pre>")


def write_index(run_dir: Path, summary: dict) -> Path:
    """Write <run_dir>/index.html; never raises on a rendering error (the page then says what failed)."""
    path = Path(run_dir) / "index.html"
    try:
        body = render(run_dir, summary)
    except Exception:  # noqa: BLE001 - a broken page must not turn a verdict into a runner crash
        body = fallback(summary, traceback.format_exc())
    path.write_text(body, encoding="utf-8")
    return path
