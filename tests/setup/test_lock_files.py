"""The lock files (scripts/lock-requirements.sh): every top-level pin of requirements/*.txt is locked at
its version, every locked package carries at least one hash, and the services' versions agree between
the image lock and the harness lock; a lock entry without a hash is reported, naming it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def normalize(name: str) -> str:
    """The PEP 503 form of a project name (pip freeze and pip-compile spell names differently)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """The `name==version` pins of a top-level requirements file, following `-r` includes."""
    pins: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins.update(read_pins(path.parent / line[3:].strip()))
            continue
        m = PIN.match(line)
        if not m:
            raise ValueError(f"{path.name}:{n}: not a `name==version` pin: {line!r}")
        pins[normalize(m.group(1))] = m.group(2)
    return pins


def parse_lock(text: str, name: str = "lock") -> dict[str, str]:
    """The locked `name -> version` of a pip-compile lock; ValueError names an entry without a hash."""
    locked: dict[str, str] = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        tokens = re.sub(r"(^|\s)#.*$", "", entry).split()
        if not tokens:
            continue
        m = PIN.match(tokens[0])
        if not m:
            raise ValueError(f"{name}: not a `name==version` entry: {entry.strip()!r}")
        bad = [t for t in tokens[1:] if not HASH.match(t)]
        if bad:
            raise ValueError(f"{name}: {tokens[0]} has {bad[0]!r} where only --hash=sha256:... may follow")
        if len(tokens) == 1:
            raise ValueError(f"{name}: {tokens[0]} has no --hash (pip --require-hashes would refuse it)")
        locked[normalize(m.group(1))] = m.group(2)
    return locked


def pin_problems(pins: dict[str, str], locked: dict[str, str]) -> list[str]:
    """Each top-level pin the lock leaves out or locks at another version."""
    return [f"{name}=={version} is locked as {locked.get(name, 'missing')}"
            for name, version in sorted(pins.items()) if locked.get(name) != version]


def lock(name: str) -> dict[str, str]:
    path = REQUIREMENTS / name
    return parse_lock(path.read_text(), path.name)


@pytest.mark.parametrize("top, locked", [("services.txt", "services.lock"), ("dev.txt", "dev.lock")])
def test_every_top_level_pin_is_locked_at_its_version(top, locked):
    pins = read_pins(REQUIREMENTS / top)
    assert len(pins) >= 8, pins      # services.txt has 8 pins, dev.txt those and its own
    assert pin_problems(pins, lock(locked)) == []


@pytest.mark.parametrize("name", ["services.lock", "dev.lock"])
def test_every_locked_package_has_a_hash(name):
    text = (REQUIREMENTS / name).read_text()
    locked = parse_lock(text, name)     # raises on an entry without a hash
    entries = re.findall(r"^[A-Za-z0-9][^\s]*==", text, re.M)
    assert len(locked) == len(entries), "every entry was read"
    assert len(locked) > len(read_pins(REQUIREMENTS / name.replace(".lock", ".txt"))), "transitive ones too"


def test_the_images_and_the_harness_lock_the_same_service_versions():
    services, dev = lock("services.lock"), lock("dev.lock")
    assert {n: v for n, v in services.items() if dev.get(n) != v} == {}


def test_a_lock_entry_without_a_hash_is_rejected_naming_it():
    good = ("anyio==4.16.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via starlette\n")
    assert parse_lock(good) == {"anyio": "4.16.0"}
    with pytest.raises(ValueError, match=r"pyzmq==27\.3\.0 has no --hash"):
        parse_lock(good + "pyzmq==27.3.0\n    # via -r requirements/services.txt\n")
    with pytest.raises(ValueError, match=r"uvloop==0\.23\.0 has '--hash=md5:0f'"):
        parse_lock(good + "uvloop==0.23.0 \\\n    --hash=md5:0f\n")


def test_a_pin_locked_at_another_version_or_left_out_is_reported():
    problems = pin_problems({"pyzmq": "27.3.0", "orjson": "3.13.0"}, {"pyzmq": "27.2.0"})
    assert problems == ["orjson==3.13.0 is locked as missing", "pyzmq==27.3.0 is locked as 27.2.0"]
