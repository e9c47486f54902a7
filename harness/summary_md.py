"""The run's summary table as Markdown, for CI job summaries ($GITHUB_STEP_SUMMARY); stdlib only.
Usage: python -m harness.summary_md reports/latest/summary.json >> "$GITHUB_STEP_SUMMARY"."""
from __future__ import annotations

import json
import sys
from pathlib import Path

FAILED = {"failed", "error", "hook_error", "undefined", "cleanup_error", "traceback"}
MARK = {"passed": "✅", "skipped": "⏭️"}


def cell(text) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def render(summary: dict) -> str:
    """Verdict, totals and one row per scenario (failed ones first); an environment failure names itself."""
    run = cell(summary.get("run_id", "?"))
    if summary.get("environment_error"):
        return (f"## Apiary run {run}: ENVIRONMENT FAILURE (exit {summary.get('exit_code')})\n\n"
                f"**{cell(summary['environment_error'])}**\n\n```\n{summary.get('detail', '')}\n```\n")
    t = summary.get("totals") or {}
    gate = summary.get("gate") or {}
    verdict = "PASS" if summary.get("exit_code") == 0 else "FAIL"
    lines = [f"## Apiary run {run}: {verdict} (exit {summary.get('exit_code')})", "",
             f"{t.get('total', 0)} scenarios: {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, "
             f"{t.get('skipped', 0)} skipped in {summary.get('elapsed_s', 0):.1f}s · seed {summary.get('seed')} · "
             f"backend {summary.get('backend')} · gate {'holds' if gate.get('passed') else 'fails'}", ""]
    lines += [f"- {cell(r)}" for r in gate.get("reasons", [])]
    lines += ["", "| status | time | feature | scenario | bundle / reason |", "|---|---:|---|---|---|"]
    rows = sorted(summary.get("scenarios") or [], key=lambda s: s.get("status") not in FAILED)
    for s in rows:
        status = s.get("status", "")
        mark = "❌" if status in FAILED else MARK.get(status, "")
        extra = s.get("bundle") or s.get("skip_reason") or ""
        lines.append(f"| {mark} {cell(status)} | {s.get('elapsed_s', s.get('duration_s', 0)):.2f}s | {cell(s.get('feature'))} "
                     f"| {cell(s.get('scenario'))} | {cell(extra)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "reports/latest/summary.json")
    if not path.exists():
        print(f"## Apiary run: no summary.json at {path} (the runner did not get as far as a run directory)")
        return 1
    print(render(json.loads(path.read_text())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
