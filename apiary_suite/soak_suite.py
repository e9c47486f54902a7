"""Soaks inside a behave scenario (@soak): run seeded soaks on the scenario's stack, keep their results, and
answer the Thens (checker verdict, recovery, availability, faults verified, shrink) from what was observed.
One instance per scenario (Soaks.of(world)); results also go to <run dir>/soaks.jsonl for the report."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from harness.gate import load_gate
from apiary_suite.soak import SoakSpec, run_soak
from apiary_suite.soak_load import LoadPlan
from apiary_suite.world import setting

ROOT = Path(__file__).resolve().parents[1]


class Soaks:
    """The soaks of one scenario and the questions its steps ask about them."""

    def __init__(self, world: Any):
        self.w = world
        self.run_dir = Path(setting(world.settings, "report_dir", None) or ROOT / "reports" / "manual")
        gate_file = setting(world.settings, "gate_file", "") or str(ROOT / "gate.yml")
        self.policy = load_gate(Path(gate_file))
        self.results: list[dict] = []
        self.dirs: list[Path] = []
        self.specs: list[SoakSpec] = []
        self.shrunk: dict | None = None

    @classmethod
    def of(cls, world: Any) -> "Soaks":
        if "soaks" not in world.vars:
            world.vars["soaks"] = cls(world)
        return world.vars["soaks"]

    @property
    def fresh_seed(self) -> int:
        """The run's own seed (random unless --seed), so each run also explores a new schedule."""
        return int(setting(self.w.settings, "seed", 0) or 0)

    def run(self, seeds: list[int], profile: str, seconds: float, rate: float = 20.0, bug: str | None = None,
            label: str = "soak") -> list[dict]:
        """Run one soak per seed, one after the other, on the scenario's stack (reset in between)."""
        for i, seed in enumerate(seeds):
            if i:
                self.w.cluster.reset()
            spec = SoakSpec(seed=seed, profile=profile, duration_s=self.w.scaled(seconds), bug=bug,
                            plan=LoadPlan(rate_rps=rate, clients=max(4, int(rate // 3) + 4)), name=f"soak-{seed}",
                            images=self.images())
            out = self.run_dir / "soaks" / f"{slug(label)}-seed-{seed}"
            result = run_soak(self.w.cluster, out, spec, self.policy, revision=self.revision(),
                              say=lambda m: print(m, file=sys.__stderr__, flush=True))
            result["dir"] = str(out.relative_to(self.run_dir)) if out.is_relative_to(self.run_dir) else str(out)
            self.results.append(result)
            self.dirs.append(out)
            self.specs.append(spec)
            with open(self.run_dir / "soaks.jsonl", "a") as fh:
                fh.write(json.dumps({k: v for k, v in result.items() if k != "intervals"}, default=str) + "\n")
        return self.results

    def images(self) -> dict[str, str]:
        """Image id per service of the stack under test (recorded with each soak's schedule)."""
        out = {}
        for service in self.w.cluster.services:
            try:
                out[service] = self.w.cluster.container(service).image.id
            except Exception as exc:  # noqa: BLE001 - the local backend has no images
                out[service] = f"unknown: {type(exc).__name__}"
        return out

    def revision(self) -> str:
        from harness.settings import git_revision
        return git_revision()

    def failed_checks(self, name: str) -> list[str]:
        """'<soak>: <detail>' for every soak whose check `name` did not pass."""
        assert self.results, "no soak ran in this scenario"
        return [f"{r['name']}: {r['checks'][name]['detail']}" for r in self.results if not r["checks"][name]["passed"]]

    def verdicts(self) -> dict[str, Any]:
        assert self.results, "no soak ran in this scenario"
        return {r["name"]: r["verdict"]["valid"] for r in self.results}

    def anomalies(self, kind: str) -> list[dict]:
        """Anomalies of a kind across the scenario's soaks."""
        return [a for r in self.results for a in r["verdict"].get("anomalies", []) if a["kind"] == kind]

    def below(self, rps: float, per_min: float) -> list[dict]:
        """Figures of the soaks that carried fewer tries a second or applied fewer faults a minute."""
        assert self.results, "no soak ran in this scenario"
        return [{"name": r["name"], "rps": r["rps"], "faults_per_min": r["faults_per_min"]} for r in self.results
                if r["rps"] < rps or r["faults_per_min"] < per_min]

    def shrink_last(self, max_runs: int, deadline_s: float) -> dict:
        """Delta-debug the last soak (it must have failed) on this stack; writes shrunk-schedule.json beside it."""
        from apiary_suite.soak_replay import shrink_soak, spec_from_run
        assert self.results and not self.results[-1]["passed"], "the last soak passed: nothing to shrink"
        spec = spec_from_run(self.dirs[-1], self.specs[-1])
        self.w.cluster.reset()
        self.shrunk = shrink_soak(self.w.cluster, self.dirs[-1] / "shrink", self.results[-1], spec, self.policy,
                                  self.revision(), reset=self.w.cluster.reset, max_runs=max_runs,
                                  deadline_s=self.w.scaled(deadline_s), say=lambda m: print(m, file=sys.__stderr__, flush=True))
        return self.shrunk

    def artifacts(self) -> dict[str, str]:
        """For a failure bundle: where each soak's evidence is, and its checks."""
        return {"soaks.json": json.dumps([{"name": r["name"], "dir": r.get("dir"), "checks": r["checks"],
                                          "verdict": r["verdict"]["valid"]} for r in self.results], indent=1)}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "soak"
