"""Steps reach the harness one way: through context.world (its cluster, nemesis, chaos, netquality, soaks and
intruders are attributes of the scenario's World), never through context.cluster or an X.of(world) of their own."""
import re
from pathlib import Path

STEPS = Path(__file__).resolve().parents[2] / "features" / "steps"
OTHER_ROOTS = re.compile(r"context\.cluster\b|\b[A-Z]\w*\.of\(context\.world\)|from apiary_suite\.(chaos|netquality|soak_suite) import")


def other_roots(text: str) -> list[str]:
    """The lines of a step module that reach the harness other than through context.world."""
    return [line.strip() for line in text.splitlines() if OTHER_ROOTS.search(line)]


def test_every_step_module_goes_through_the_world():
    found = {p.name: bad for p in sorted(STEPS.glob("*.py")) if (bad := other_roots(p.read_text()))}
    assert not found, f"steps reaching the harness around context.world: {found}"


def test_a_crafted_step_module_with_other_roots_is_caught():
    crafted = ("from apiary_suite.chaos import Chaos\n"
               "def step(context):\n    Chaos.of(context.world).mark()\n    context.cluster.exec('x', ['true'])\n"
               "def fine(context):\n    context.world.chaos.mark()\n")
    assert other_roots(crafted) == ["from apiary_suite.chaos import Chaos", "Chaos.of(context.world).mark()",
                                    "context.cluster.exec('x', ['true'])"]
