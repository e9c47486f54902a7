"""The kit's generic behave steps; a suite's steps import them in one line (as behave4cmd0 is used):

    from harness.behave.steps import *  # noqa

Every step works over `context.world` (a harness.behave.world.KitWorld); "{name}" inside a quoted argument
is replaced by the world's vars[name] (a suite's steps set them, e.g. {leader})."""
from harness.behave.steps import checks, faults, health, schedule  # noqa: F401 - importing registers the steps

__all__ = ["checks", "faults", "health", "schedule"]
