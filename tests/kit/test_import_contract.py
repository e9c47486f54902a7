"""The import contract of ARCHITECTURE.md, checked over the source: the kit (harness/) imports nothing from
services/ or from the Apiary suite adapter (apiary_suite/; only other kit modules), and the behave hooks never import the runner's CLI.
A crafted package proves the check finds a violation."""
from pathlib import Path

from tests.kit.importgraph import chain, closure, modules

SUITE = "apiary_suite"          # the Apiary suite adapter: the only package that may join the kit to services/
CLI = ("harness.runner", "harness.options")


def is_kit(name: str) -> bool:
    """Every module under harness/ is the kit."""
    return name == "harness" or name.startswith("harness.")


def violations(mods: dict, starts: list[str], allowed) -> list[str]:
    out = []
    for start in starts:
        via = closure(start, mods)
        out += [chain(via, m) for m in via if not allowed(m)]
    return sorted(set(out))


def test_the_kit_imports_only_the_kit():
    mods = modules()
    kit = sorted(m for m in mods if is_kit(m) and m != "harness")
    assert len(kit) >= 60, f"the kit's module list looks wrong: {kit}"
    assert any(m.startswith(SUITE + ".") for m in mods), f"no {SUITE} package: the adapter moved?"
    bad = violations(mods, kit, is_kit)
    assert not bad, "the kit imports outside itself:\n" + "\n".join(bad)


def test_the_behave_hooks_never_import_the_cli():
    mods = modules()
    bad = violations(mods, ["features.environment"], lambda m: m not in CLI)
    assert not bad, "the behave hooks import the runner's CLI:\n" + "\n".join(bad)


def crafted_violations(root: Path, files: dict[str, str]) -> list[str]:
    """Write a crafted harness/ + services/ tree under root; what the contract finds from harness.stack."""
    for rel, text in {"harness/__init__.py": "", "services/__init__.py": "", "services/protocol.py": "",
                      "apiary_suite/__init__.py": "", "apiary_suite/world.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return violations(modules(root, ("harness", SUITE, "services")), ["harness.stack"], is_kit)


def test_a_crafted_violation_is_found(tmp_path: Path):
    bad = crafted_violations(tmp_path, {"harness/stack/__init__.py": "from harness.helper import x\n",
                                        "harness/helper.py": "def x():\n    import services.protocol\n"})
    assert "harness.stack -> harness.helper -> services.protocol" in bad


def test_a_package_init_runs_for_its_modules_so_its_imports_count(tmp_path: Path):
    """`from harness.nemesis.kinds import x` runs harness/nemesis/__init__.py first: what that imports is reached."""
    bad = crafted_violations(tmp_path, {"harness/nemesis/__init__.py": "from harness.suite_thing import y\n",
                                        "harness/nemesis/kinds.py": "x = 1\n",
                                        "harness/stack/__init__.py": "from harness.nemesis.kinds import x\n",
                                        "harness/suite_thing.py": "import services.protocol\ny = 2\n"})
    assert "harness.stack -> harness.nemesis -> harness.suite_thing -> services.protocol" in bad, bad


def test_a_kit_module_reaching_into_the_suite_is_found(tmp_path: Path):
    bad = crafted_violations(tmp_path, {"harness/stack/__init__.py": "def f():\n    from apiary_suite.world import World\n"})
    assert "harness.stack -> apiary_suite.world" in bad, bad


def test_the_etcd_example_reaches_only_the_kit():
    """The proof of reuse: examples/etcd (its stack, adapter, hooks and steps) imports the kit, never Apiary's
    suite adapter or services/."""
    mods = modules()
    example = sorted(m for m in mods if m.startswith("examples.etcd."))
    assert len(example) >= 4, f"the etcd example's modules look wrong: {example}"
    bad = violations(mods, example, lambda m: is_kit(m) or m in ("examples", "examples.etcd") or m.startswith("examples.etcd."))
    assert not bad, "the etcd example imports outside the kit:\n" + "\n".join(bad)
