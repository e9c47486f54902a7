"""The release gate: gate.yml read and validated against one schema (an unknown key or a wrong type is an
error naming the key), and the verdict over a run's summary, including scenarios skipped because the run
fell back to local processes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.report import FAILED


class GateError(ValueError):
    """gate.yml cannot be used; the message names the file and the key."""


def _tag_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(t, str) and t.strip("@") for t in v)


def _bool_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(b, bool) for k, b in v.items())


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _seconds(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def _fraction(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


# key -> (check, what the value must be, default)
SCHEMA: dict[str, tuple[Any, str, Any]] = {
    "must_pass": (_tag_list, "a list of tag names, e.g. [p0, smoke]", ["p0"]),
    "allow_skips": (_bool_map, "a mapping of tag name to true/false", {"p0": False}),
    "default_allow_skips": (lambda v: isinstance(v, bool), "true or false", True),
    "flake_budget": (_count, "a whole number >= 0", 0),
    "min_scenarios": (_count, "a whole number >= 0 (scenarios that ran, skips not counted)", 1),
}
SOAK_SCHEMA: dict[str, tuple[Any, str, Any]] = {
    "max_recovery_s": (_seconds, "seconds >= 0", 30.0),
    "min_availability": (_fraction, "a fraction 0..1", 0.5),
    "allow_unknown": (lambda v: isinstance(v, bool), "true or false", False),
    "max_unverified_faults": (_count, "a whole number >= 0", 0),
}
DEFAULT_GATE = {k: v[2] for k, v in SCHEMA.items()} | {"soak": {k: v[2] for k, v in SOAK_SCHEMA.items()}}


def _checked(raw: Any, schema: dict, where: str) -> dict:
    if not isinstance(raw, dict):
        raise GateError(f"{where}: must be a mapping of keys to values, not {type(raw).__name__}")
    out = {}
    for key, value in raw.items():
        if key not in schema:
            raise GateError(f"{where}: unknown key {key!r} (known: {', '.join(schema)})")
        check, what, _ = schema[key]
        if not check(value):
            raise GateError(f"{where}: key {key!r} must be {what}, not {value!r}")
        out[key] = value
    return out


def validate(raw: Any, source: str = "gate.yml") -> dict:
    """A checked policy merged over the defaults; GateError names the file and the offending key."""
    raw = {} if raw is None else raw
    top = dict(SCHEMA, soak=(lambda v: isinstance(v, dict), "a mapping (max_recovery_s, ...)", {}))
    policy = _checked(raw, top, source)
    soak = _checked(policy.pop("soak", {}), SOAK_SCHEMA, f"{source}: soak")
    merged = {k: v[2] for k, v in SCHEMA.items()} | policy
    merged["must_pass"] = [t.lstrip("@") for t in merged["must_pass"]]
    merged["allow_skips"] = {k.lstrip("@"): v for k, v in merged["allow_skips"].items()}
    merged["soak"] = {k: v[2] for k, v in SOAK_SCHEMA.items()} | soak
    return merged


def load_gate(path: Path) -> dict:
    """gate.yml validated and merged over the defaults (defaults when the file is missing)."""
    path = Path(path)
    if not path.exists():
        return validate({}, str(path))
    import yaml
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise GateError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return validate(raw, str(path))


def apply_gate(summary: dict, policy: dict) -> dict:
    """The gate verdict: {'passed': bool, 'reasons': [...]} for the summary under the policy."""
    reasons: list[str] = []
    scenarios = summary["scenarios"]
    ran = [s for s in scenarios if s["status"] != "skipped"]
    if len(ran) < int(policy.get("min_scenarios", 1)):
        reasons.append(f"only {len(ran)} scenario(s) ran ({len(scenarios) - len(ran)} skipped); "
                       f"the gate needs at least {policy['min_scenarios']}")
    failed = [s for s in scenarios if s["status"] in FAILED]
    flaky = [s for s in scenarios if "flaky" in s["tags"]]
    budget = int(policy.get("flake_budget", 0))
    counted = [s for s in failed if "flaky" not in s["tags"]]
    flaky_failed = [s for s in failed if "flaky" in s["tags"]]
    if len(flaky_failed) > budget:
        counted += flaky_failed
        reasons.append(f"{len(flaky_failed)} @flaky failure(s) exceed the flake budget of {budget}")
    for tag in policy.get("must_pass", []):
        tag = tag.lstrip("@")
        bad = [s for s in counted if tag in s["tags"]]
        if bad:
            reasons.append(f"@{tag} must pass entirely: {len(bad)} failed ({bad[0]['scenario']!r}...)")
    if counted:
        reasons.append(f"{len(counted)} scenario(s) failed")
    reasons += _skip_reasons(scenarios, policy, summary.get("backend_fallback"))
    return {"passed": not reasons, "reasons": reasons, "flaky_seen": len(flaky), "policy": policy}


def _skip_reasons(scenarios: list[dict], policy: dict, fallback: str | None) -> list[str]:
    """Skips the policy does not allow; after a fallback to local processes, skipping @container is
    allowed only when gate.yml says `allow_skips: {container: true}` in so many words."""
    allow = policy.get("allow_skips", {}) or {}
    out = []
    skipped = [s for s in scenarios if s["status"] == "skipped"]
    if fallback:
        dropped = [s for s in skipped if "container" in s["tags"]]
        if dropped and allow.get("container") is not True:
            out.append(f"{len(dropped)} @container scenario(s) were skipped because the run fell back to local "
                       f"processes ({fallback}); the policy does not allow that (allow_skips: {{container: true}} "
                       f"would) — run with a Docker engine")
            skipped = [s for s in skipped if "container" not in s["tags"]]
    for s in skipped:
        denied = [t for t in s["tags"] if t in allow and not allow[t]]
        if denied or (not any(t in allow for t in s["tags"]) and not policy.get("default_allow_skips", True)):
            out.append(f"skip not allowed for {s['scenario']!r} (tags {denied or s['tags']})")
    return out
