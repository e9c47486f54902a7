"""The kit's behave layer: hooks a suite's environment.py calls in one line each (hooks.py), the scenario's
KitWorld (world.py) and the generic step library (steps/), imported by a suite's steps in one line:
`from harness.behave.steps import *  # noqa`. Knows nothing of any one stack (docs/kit.md)."""
