"""A new fault kind is one new file: load_kinds() imports every kinds_*.py of the package, and the kind it
registers is then found by name (and a module not named kinds_* is not loaded)."""
import sys

from harness.nemesis.protocol import REGISTRY, load_kinds, lookup

KIND_FILE = '''from harness.errors import NemesisError
from harness.nemesis.protocol import FaultKind, register


@register
class Wobble(FaultKind):
    """A kind a newcomer added."""

    name = "test-wobble"
    defaults = {}

    def targets(self, stack):
        return []

    def apply(self, stack, target, **params):
        raise NemesisError("test-wobble is only registered by this test, never applied")
'''


def test_every_kinds_file_of_the_package_registers(tmp_path, monkeypatch):
    pkg = tmp_path / "newcomer_kinds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "kinds_wobble.py").write_text(KIND_FILE)
    (pkg / "helpers.py").write_text("raise RuntimeError('not a kinds_ file: never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert load_kinds("newcomer_kinds") == ["kinds_wobble"]
        assert lookup("test-wobble").name == "test-wobble"
    finally:
        REGISTRY.pop("test-wobble", None)
        for mod in [m for m in sys.modules if m.startswith("newcomer_kinds")]:
            del sys.modules[mod]


def test_the_kits_own_kinds_are_all_loaded():
    assert load_kinds() == ["kinds_network", "kinds_process", "kinds_quality", "kinds_storage"]
    assert {"partition", "loss", "kill", "latency", "storage-corrupt"} <= set(REGISTRY)


def test_the_suite_registers_its_own_kinds_from_its_package():
    """Apiary's extra-workers kind is the suite's (it starts the mock-worker image): importing the suite loads it."""
    import apiary_suite
    assert load_kinds(apiary_suite.__name__) == ["kinds_workers"]
    assert REGISTRY["extra-workers"].__module__ == "apiary_suite.kinds_workers"
