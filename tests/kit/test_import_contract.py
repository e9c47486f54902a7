"""The import contract of ARCHITECTURE.md, checked over the source: the kit imports nothing from services/
or from the Apiary suite adapter (only other kit modules), and the behave hooks never import the runner's CLI.
A crafted package proves the check finds a violation."""
from pathlib import Path

from tests.kit.importgraph import chain, closure, modules

KIT_PACKAGES = ("harness.stack", "harness.nemesis", "harness.toxiproxy", "harness.behave")
KIT_PREFIXES = ("harness.checkers.linearizable",)   # linearizable.py and its helper modules
KIT_MODULES = {"harness.checkers", "harness.history", "harness.wait", "harness.deadline", "harness.errors", "harness.stats",
               "harness.compose", "harness.startup", "harness.sweep"}
# The nemesis package's facade (Nemesis: the step library's roots, RoguePeer) and its two verb classes are
# the suite's today; the fault protocol, the player, the generator and every kind are the kit's.
NOT_KIT = {"harness.nemesis.network", "harness.nemesis.process"}
# Known debt, each to move into the suite adapter (issue 13): the kit may reach these, nothing else.
DEBT = {"harness.extra_workers": "kinds_workers starts Apiary's mock-worker image"}
CLI = ("harness.runner", "harness.options")


def is_kit(name: str) -> bool:
    if name in NOT_KIT:
        return False
    return (name in KIT_MODULES or name == "harness" or name.startswith(KIT_PREFIXES)
            or any(name == p or name.startswith(p + ".") for p in KIT_PACKAGES))


def violations(mods: dict, starts: list[str], allowed) -> list[str]:
    out = []
    for start in starts:
        via = closure(start, mods)
        out += [chain(via, m) for m in via if not allowed(m)]
    return sorted(set(out))


def test_the_kit_imports_only_the_kit():
    mods = modules()
    kit = sorted(m for m in mods if is_kit(m) and m != "harness")
    assert len(kit) >= 25, f"the kit's module list looks wrong: {kit}"
    bad = violations(mods, kit, lambda m: is_kit(m) or m in DEBT)
    assert not bad, "the kit imports outside itself:\n" + "\n".join(bad)


def test_every_debt_entry_is_still_needed():
    mods = modules()
    reached = set()
    for m in (m for m in mods if is_kit(m) and m != "harness"):
        reached |= set(closure(m, mods))
    stale = sorted(set(DEBT) - reached)
    assert not stale, f"no kit module imports these any more: drop them from DEBT: {stale}"


def test_the_behave_hooks_never_import_the_cli():
    mods = modules()
    bad = violations(mods, ["features.environment"], lambda m: m not in CLI)
    assert not bad, "the behave hooks import the runner's CLI:\n" + "\n".join(bad)


def crafted_violations(root: Path, files: dict[str, str]) -> list[str]:
    """Write a crafted harness/ + services/ tree under root; what the contract finds from harness.stack."""
    for rel, text in {"harness/__init__.py": "", "services/__init__.py": "", "services/protocol.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return violations(modules(root, ("harness", "services")), ["harness.stack"], is_kit)


def test_a_crafted_violation_is_found(tmp_path: Path):
    bad = crafted_violations(tmp_path, {"harness/stack/__init__.py": "from harness.helper import x\n",
                                        "harness/helper.py": "def x():\n    import services.protocol\n"})
    assert "harness.stack -> harness.helper" in bad
    assert "harness.stack -> harness.helper -> services.protocol" in bad


def test_a_package_init_runs_for_its_modules_so_its_imports_count(tmp_path: Path):
    """`from harness.nemesis.kinds import x` runs harness/nemesis/__init__.py first: what that imports is reached."""
    bad = crafted_violations(tmp_path, {"harness/nemesis/__init__.py": "from harness.suite_thing import y\n",
                                        "harness/nemesis/kinds.py": "x = 1\n",
                                        "harness/stack/__init__.py": "from harness.nemesis.kinds import x\n",
                                        "harness/suite_thing.py": "import services.protocol\ny = 2\n"})
    assert "harness.stack -> harness.nemesis -> harness.suite_thing -> services.protocol" in bad, bad
