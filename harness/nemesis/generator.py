"""Seeded fault-schedule generator: a seed, a profile (YAML) and a git revision give one schedule, byte for byte.

A schedule is a list of faults `{start_s, duration_s, kind, target, params}` sorted by start_s. Arrivals
are Poisson (rate_per_min); each draws a kind by weight, a target, a duration and its params, all from
ONE `random.Random` seeded with the string "seed:revision:canonical-profile-json" (string seeds are
stable across processes; `hash()` is not used). An arrival that breaks a rule is dropped, never shifted:
- at most `max_overlap` faults are active at once;
- never two faults on the same target at once. A link "a|b" and "b|a" are the same target (one pair of
  endpoints); a service and a link that names it are different targets, so "kill worker-a1" may overlap
  "partition hive-a|worker-a1";
- every fault ends by duration_s - quiet_s, and none starts before start_after_s.
Times are kept in whole milliseconds inside, so the rules hold exactly on the rounded values written out.

Three optional profile keys, for schedules that must do one thing every time:
- `required`: faults `{start_s, duration_s, kind, target, params}` that are always in the schedule, at
  those times. They count for max_overlap, and while one is active no drawn fault may touch any of its
  services (a drawn pause of worker-a1 during a required partition hive-a|worker-a1 is dropped), so the
  player never skips a required fault as "target busy". A soak too short to hold one is an error.
- `min_faults_per_min`: a floor. Poisson arrivals over a short soak vary widely (the ci profile at 30/min
  drew 4 to 20 faults in 50 s), so a gate that asks for a fault rate would fail on an unlucky seed. With
  the floor, a draw with fewer than ceil(floor * duration_s / 60) faults is thrown away and drawn again
  from "seed:revision:profile:redraw:N" (N = 1, 2, ...), still deterministic; after MAX_REDRAWS short
  draws it is an error naming the key.
- `pin_revision: true`: the git revision is left out of the seed, so seed + profile give the same
  schedule on every revision. Without it (every shipped profile but selftest) the revision is part of
  the seed and each revision explores new schedules; a profile without these keys seeds as before.
"""
from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

QUALITY_KINDS = ("latency", "bandwidth", "slicer", "slow_close", "limit_data", "reset_peer", "blackhole")
DEFAULT_KINDS = ("partition", "loss", "pause", "kill", "restart", "oom", "storage-read-only", "storage-corrupt",
                 *QUALITY_KINDS)
LINK_KINDS = ("partition", *QUALITY_KINDS)  # these take a link target "a|b" (b may be "*" but for QUALITY_KINDS)
TOP_KEYS = {"kinds", "rate_per_min", "max_overlap", "min_duration_s", "max_duration_s", "quiet_s", "start_after_s",
            "required", "pin_revision", "min_faults_per_min"}
REQUIRED_TOP = TOP_KEYS - {"start_after_s", "required", "pin_revision", "min_faults_per_min"}
MAX_REDRAWS = 50      # a min_faults_per_min floor redraws a short schedule at most this often
KIND_KEYS = {"weight", "targets", "params"}
ITEM_KEYS = ("start_s", "duration_s", "kind", "target", "params")
SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
KNOWN_PARAM_CHOICES = {("partition", "direction"): {"both", "a->b", "b->a"},
                       **{(k, "stream"): {"upstream", "downstream", "both"} for k in QUALITY_KINDS}}


def _fail(source: str, key: str, why: str) -> None:
    """Raise the one error shape profile and schedule checks use: file, key, reason."""
    raise ValueError(f"{source}: {key}: {why}")


def _is_number(value: Any) -> bool:
    """Return True for an int or float that is not a bool and is finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_target(kind: str, target: Any, key: str, source: str) -> None:
    """Reject a target that is not a service name, or not a link for a network kind."""
    if not isinstance(target, str):
        _fail(source, key, f"target must be a string, not {type(target).__name__}")
    parts = target.split("|")
    if kind in LINK_KINDS:
        ok = len(parts) == 2 and SERVICE_RE.match(parts[0]) and (parts[1] == "*" or SERVICE_RE.match(parts[1]))
        if not ok or parts[0] == parts[1]:
            _fail(source, key, f"{kind} needs a link target 'a|b' or 'a|*', not {target!r}")
        if kind in QUALITY_KINDS and parts[1] == "*":
            _fail(source, key, f"{kind} needs one link 'a|b' (a proxy steers one connection), not {target!r}")
    elif len(parts) != 1 or not SERVICE_RE.match(target):
        _fail(source, key, f"{kind} needs a service name target, not {target!r}")


def _check_param(kind: str, name: str, spec: Any, key: str, source: str) -> None:
    """Accept a scalar, a non-empty list of scalar choices, or {min, max} numbers with min <= max."""
    scalar = (str, int, float, bool)
    if isinstance(spec, dict):
        if set(spec) != {"min", "max"}:
            _fail(source, key, f"a range must have exactly min and max, got {sorted(spec)}")
        if not (_is_number(spec["min"]) and _is_number(spec["max"])) or spec["min"] > spec["max"]:
            _fail(source, key, f"range needs numbers with min <= max, got {spec}")
        values: list = []
    elif isinstance(spec, list):
        if not spec or not all(isinstance(v, scalar) for v in spec):
            _fail(source, key, "choices must be a non-empty list of scalars")
        values = spec
    elif isinstance(spec, scalar):
        values = [spec]
    else:
        _fail(source, key, f"must be a value, a list of choices or {{min, max}}, not {type(spec).__name__}")
    allowed = KNOWN_PARAM_CHOICES.get((kind, name))
    bad = [v for v in values if allowed is not None and v not in allowed]
    if bad:
        _fail(source, key, f"{bad} not in {sorted(allowed)}")


def _check_kind(name: Any, body: Any, known: set[str], source: str) -> dict:
    """Validate one kinds entry and return it with defaults filled (params {})."""
    key = f"kinds.{name}"
    if name not in known:
        _fail(source, key, f"unknown kind (known: {', '.join(sorted(known))})")
    if not isinstance(body, dict):
        _fail(source, key, "must be a mapping with weight, targets, params")
    for extra in sorted(set(body) - KIND_KEYS, key=str):
        _fail(source, f"{key}.{extra}", f"unknown key (allowed: {', '.join(sorted(KIND_KEYS))})")
    if "weight" not in body or "targets" not in body:
        _fail(source, key, "weight and targets are required")
    if not _is_number(body["weight"]) or body["weight"] <= 0:
        _fail(source, f"{key}.weight", f"must be a number > 0, not {body['weight']!r}")
    targets = body["targets"]
    if not isinstance(targets, list) or not targets:
        _fail(source, f"{key}.targets", "must be a non-empty list")
    for i, target in enumerate(targets):
        _check_target(name, target, f"{key}.targets[{i}]", source)
    if len(set(targets)) != len(targets):
        _fail(source, f"{key}.targets", "lists a target twice")
    params = body.get("params", {}) or {}
    if not isinstance(params, dict):
        _fail(source, f"{key}.params", "must be a mapping")
    for pname, spec in params.items():
        if not isinstance(pname, str):
            _fail(source, f"{key}.params", f"param names are strings, not {pname!r}")
        _check_param(name, pname, spec, f"{key}.params.{pname}", source)
    return {"weight": float(body["weight"]), "targets": list(targets), "params": dict(params)}


def validate_profile(profile: Any, source: str = "<profile>", known_kinds: Iterable[str] | None = None) -> dict:
    """Check a profile dict and return a normalised copy (floats, defaults filled); raise ValueError naming the key."""
    known = set(known_kinds if known_kinds is not None else DEFAULT_KINDS)
    if not isinstance(profile, dict):
        _fail(source, "<top>", f"a profile is a mapping, not {type(profile).__name__}")
    for extra in sorted(set(profile) - TOP_KEYS, key=str):
        _fail(source, str(extra), f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    for missing in sorted(REQUIRED_TOP - set(profile)):
        _fail(source, missing, "required key is missing")
    if not isinstance(profile["kinds"], dict) or not profile["kinds"]:
        _fail(source, "kinds", "must be a non-empty mapping of kind name -> {weight, targets, params}")
    out: dict = {"kinds": {str(k): _check_kind(k, v, known, source) for k, v in profile["kinds"].items()}}
    for key in ("rate_per_min", "min_duration_s", "max_duration_s", "quiet_s", "start_after_s"):
        value = profile.get(key, 0.0)
        if not _is_number(value) or value < 0 or (value == 0 and key in ("rate_per_min", "min_duration_s")):
            _fail(source, key, f"must be a number {'> 0' if key in ('rate_per_min', 'min_duration_s') else '>= 0'}"
                  f", not {value!r}")
        out[key] = float(value)
    if out["max_duration_s"] < out["min_duration_s"]:
        _fail(source, "max_duration_s", f"{out['max_duration_s']} is below min_duration_s {out['min_duration_s']}")
    overlap = profile["max_overlap"]
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 1:
        _fail(source, "max_overlap", f"must be an integer >= 1, not {overlap!r}")
    out["max_overlap"] = overlap
    if "pin_revision" in profile:                  # absent keys stay absent: they would change the seed
        if not isinstance(profile["pin_revision"], bool):
            _fail(source, "pin_revision", f"must be true or false, not {profile['pin_revision']!r}")
        out["pin_revision"] = profile["pin_revision"]
    if "min_faults_per_min" in profile:            # absent: no floor, and the seed string is as before
        floor = profile["min_faults_per_min"]
        if not _is_number(floor) or floor <= 0:
            _fail(source, "min_faults_per_min", f"must be a number > 0, not {floor!r}")
        out["min_faults_per_min"] = float(floor)
    if "required" in profile:
        out["required"] = _check_required(profile["required"], out, source)
    return out


def _check_required(items: Any, prof: dict, source: str) -> list[dict]:
    """Validate the required faults (kinds of the profile, concrete params, the overlap rules among them)."""
    if not isinstance(items, list):
        _fail(source, "required", f"must be a list of faults, not {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        key = f"required[{i}]"
        if not isinstance(item, dict) or not set(ITEM_KEYS) - {"params"} <= set(item) <= set(ITEM_KEYS):
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            _fail(source, key, f"a required fault has keys {list(ITEM_KEYS)} (params optional), got {got}")
        if item["kind"] not in prof["kinds"]:
            _fail(source, f"{key}.kind", f"{item['kind']!r} is not one of this profile's kinds")
        _check_target(item["kind"], item["target"], f"{key}.target", source)
        if not _is_number(item["start_s"]) or item["start_s"] < prof["start_after_s"]:
            _fail(source, f"{key}.start_s", f"must be a number >= start_after_s ({prof['start_after_s']})")
        if not _is_number(item["duration_s"]) or item["duration_s"] <= 0:
            _fail(source, f"{key}.duration_s", f"must be a number > 0, not {item['duration_s']!r}")
        params = item.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(v, (str, int, float, bool)) for v in params.values()):
            _fail(source, f"{key}.params", "must be a mapping of concrete values (no choices or ranges)")
        for name, value in params.items():
            _check_param(item["kind"], name, value, f"{key}.params.{name}", source)
        out.append({"start_ms": round(item["start_s"] * 1000), "dur_ms": round(item["duration_s"] * 1000),
                    "kind": item["kind"], "target": item["target"], "params": dict(params)})
    out.sort(key=lambda r: r["start_ms"])
    kept: list[dict] = []
    for i, r in enumerate(out):
        if not _fits(kept, r["start_ms"], r["dur_ms"], r["target"], prof["max_overlap"]):
            _fail(source, "required", f"{r['kind']} {r['target']} at {r['start_ms'] / 1000}s overlaps another "
                  f"required fault on its target or makes more than max_overlap ({prof['max_overlap']}) at once")
        kept.append(_kept(r["start_ms"], r["dur_ms"], r["target"], True))
    return [{"start_s": r["start_ms"] / 1000, "duration_s": r["dur_ms"] / 1000, "kind": r["kind"],
             "target": r["target"], "params": r["params"]} for r in out]


def profiles_dir() -> Path | None:
    """The directory profile names are looked up in: the stack's compose file's x-apiary.profiles."""
    from harness.stack import default_topology
    found = default_topology().profiles
    return Path(found) if found else None


def load_profile(path_or_name: str, known_kinds: Iterable[str] | None = None) -> dict:
    """Read a profile by name (<x-apiary.profiles>/<name>.yml) or path, validate it and return it normalised."""
    text = str(path_or_name)
    path = Path(text)
    if "/" not in text and path.suffix not in (".yml", ".yaml"):
        folder = profiles_dir()
        if folder is None:
            from harness.stack import compose_file
            raise ValueError(f"profile {text!r}: a name is looked up in the directory the compose file's "
                             f"x-apiary.profiles names, and {compose_file()} names none; give the profile's path")
        path = folder / f"{text}.yml"
        if not path.is_file():
            names = sorted(p.stem for p in folder.glob("*.yml"))
            raise ValueError(f"{path}: no profile named {text!r} (have: {', '.join(names)})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read profile: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    return validate_profile(data, str(path), known_kinds)


def canonical_json(value: Any) -> str:
    """Return the one JSON spelling of a value used for seeding (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _draw_param(rng: random.Random, spec: Any) -> Any:
    """Draw one param value: a scalar as is, a choice from a list, a number from {min, max}."""
    if isinstance(spec, list):
        return spec[rng.randrange(len(spec))]
    if isinstance(spec, dict):
        lo, hi = spec["min"], spec["max"]
        if isinstance(lo, int) and isinstance(hi, int):
            return rng.randint(lo, hi)
        return round(rng.uniform(lo, hi), 3)
    return spec


def conflict_key(target: str) -> str:
    """Return the key two faults must not share at once: the target, with a link's endpoints sorted."""
    parts = target.split("|")
    return "|".join(sorted(parts)) if len(parts) == 2 else target


def services_of(target: str) -> set[str]:
    """The services a target touches ("*" stands for every service)."""
    return set(target.split("|"))


def _kept(start_ms: int, dur_ms: int, target: str, required: bool = False) -> dict:
    return {"start": start_ms, "end": start_ms + dur_ms, "key": conflict_key(target),
            "services": services_of(target), "required": required}


def _fits(kept: list[dict], start_ms: int, dur_ms: int, target: str, max_overlap: int) -> bool:
    """Whether a fault over [start, start + dur) keeps the rules with the faults kept so far: at most
    max_overlap at any instant, no shared target, no shared service with a required fault."""
    end, key, services = start_ms + dur_ms, conflict_key(target), services_of(target)
    over = [k for k in kept if k["start"] < end and k["end"] > start_ms]
    if any(k["key"] == key for k in over):
        return False
    if any(k["required"] and (k["services"] & services or "*" in k["services"] | services) for k in over):
        return False
    points = [start_ms] + [k["start"] for k in over if k["start"] > start_ms]
    return all(sum(k["start"] <= p < k["end"] for k in over) < max_overlap for p in points)


def generate(seed: int, profile: dict, duration_s: float, revision: str = "") -> list[dict]:
    """Return the schedule for (seed, profile, revision) over duration_s seconds, sorted by start_s."""
    prof = validate_profile(profile)
    if not _is_number(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be a number > 0, not {duration_s!r}")
    if prof.get("pin_revision"):
        revision = "pinned"
    base = f"{seed}:{revision}:{canonical_json(prof)}"
    need = math.ceil(prof.get("min_faults_per_min", 0.0) * duration_s / 60 - 1e-9)
    for attempt in range(MAX_REDRAWS):
        schedule = _draw(random.Random(base if attempt == 0 else f"{base}:redraw:{attempt}"), prof, duration_s)
        if len(schedule) >= need:
            return schedule
    raise ValueError(f"min_faults_per_min: {prof['min_faults_per_min']}/min needs {need} faults in {duration_s}s, and "
                     f"none of {MAX_REDRAWS} draws of seed {seed} kept that many (the last kept {len(schedule)}): raise "
                     f"rate_per_min or max_overlap, or lower the floor")


def _draw(rng: random.Random, prof: dict, duration_s: float) -> list[dict]:
    """Draw one schedule from rng: Poisson arrivals, each kept only if it breaks no rule."""
    kinds = sorted(prof["kinds"])
    weights = [prof["kinds"][k]["weight"] for k in kinds]
    rate_per_ms = prof["rate_per_min"] / 60_000.0
    lo_ms, hi_ms = round(prof["min_duration_s"] * 1000), round(prof["max_duration_s"] * 1000)
    end_by_ms = round((duration_s - prof["quiet_s"]) * 1000)
    t_ms = float(prof["start_after_s"] * 1000)
    schedule = [dict(r) for r in prof.get("required", [])]
    kept = [_kept(round(r["start_s"] * 1000), round(r["duration_s"] * 1000), r["target"], True) for r in schedule]
    for i, k in enumerate(kept):
        if k["end"] > end_by_ms:
            raise ValueError(f"required[{i}] ({schedule[i]['kind']} {schedule[i]['target']}) ends at {k['end'] / 1000}s"
                             f", inside the quiet period of a {duration_s}s soak: the soak is too short for it")
    while True:
        t_ms += rng.expovariate(rate_per_ms)
        start_ms = round(t_ms)
        if start_ms + lo_ms > end_by_ms:
            break
        kind = rng.choices(kinds, weights)[0]
        body = prof["kinds"][kind]
        target = body["targets"][rng.randrange(len(body["targets"]))]
        dur_ms = rng.randint(lo_ms, hi_ms)
        params = {name: _draw_param(rng, body["params"][name]) for name in sorted(body["params"])}
        if start_ms + dur_ms > end_by_ms or not _fits(kept, start_ms, dur_ms, target, prof["max_overlap"]):
            continue                                 # dropped, not shifted
        kept.append(_kept(start_ms, dur_ms, target))
        schedule.append({"start_s": start_ms / 1000, "duration_s": dur_ms / 1000, "kind": kind,
                         "target": target, "params": params})
    return sorted(schedule, key=lambda item: item["start_s"])        # stable: a required fault first on a tie


def schedule_json(schedule: list[dict], meta: dict) -> str:
    """Return the canonical text of a schedule file: {"meta", "schedule"}, one fault per line, newline-ended."""
    def dump(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(", ", ": "), ensure_ascii=True, allow_nan=False)
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, not {type(meta).__name__}")
    check_schedule(schedule, "<schedule>")
    rows = ",\n".join("  " + dump(item) for item in schedule)
    return '{"meta": ' + dump(meta) + ',\n "schedule": [' + ("\n" + rows + "\n " if rows else "") + "]}\n"


def check_schedule(schedule: Any, source: str) -> list[dict]:
    """Raise ValueError (naming source and item) unless schedule is a list of well-formed faults."""
    if not isinstance(schedule, list):
        _fail(source, "schedule", f"must be a list, not {type(schedule).__name__}")
    for i, item in enumerate(schedule):
        key = f"schedule[{i}]"
        if not isinstance(item, dict) or set(item) != set(ITEM_KEYS):
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            _fail(source, key, f"a fault has exactly keys {list(ITEM_KEYS)}, got {got}")
        for num in ("start_s", "duration_s"):
            if not _is_number(item[num]) or item[num] < 0:
                _fail(source, f"{key}.{num}", f"must be a number >= 0, not {item[num]!r}")
        if not isinstance(item["kind"], str) or not isinstance(item["target"], str) or not item["target"]:
            _fail(source, key, "kind and target must be non-empty strings")
        if not isinstance(item["params"], dict):
            _fail(source, f"{key}.params", "must be a mapping")
        if i and item["start_s"] < schedule[i - 1]["start_s"]:
            _fail(source, f"{key}.start_s", "schedule is not sorted by start_s")
    return schedule


def read_schedule(path: str | Path) -> tuple[list[dict], dict]:
    """Read a schedule.json (or a run dir holding one) and return (schedule, meta); errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "schedule.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read schedule: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if isinstance(data, list):
        return check_schedule(data, str(path)), {}
    if not isinstance(data, dict) or "schedule" not in data:
        raise ValueError(f"{path}: a schedule file is {{'meta': ..., 'schedule': [...]}} or a bare list")
    unknown = sorted(set(data) - {"meta", "schedule"})
    if unknown:
        raise ValueError(f"{path}: {unknown[0]}: unknown key (allowed: meta, schedule)")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: meta: must be a mapping")
    return check_schedule(data["schedule"], str(path)), meta


def draw(seed: int, profile: str, duration_s: float, revision: str = "",
         given: list[dict] | None = None) -> tuple[list[dict], dict]:
    """The one way a run gets its schedule: (schedule, meta) drawn from a profile name or path, or the
    `given` one (a replay) with the same meta; ValueError names what is wrong with the profile or the length."""
    prof = load_profile(profile)
    schedule = given if given is not None else generate(seed, prof, duration_s, revision)
    return schedule, {"seed": seed, "profile": profile, "duration_s": duration_s, "git_revision": revision,
                      "quiet_s": prof.get("quiet_s", 0), "faults": len(schedule)}
