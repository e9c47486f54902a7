"""The kit's generic steps (faults, health, checkers), imported in one line."""
from harness.behave.steps import *  # noqa: F401,F403
