"""The runner's one way to the suite under test: the module a compose file's x-apiary block names
(`suite: package.module`). The kit imports it by that name and calls only the hooks listed in Suite, so the
kit's own code names no suite (tests/kit/test_import_contract.py)."""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from harness.errors import EnvironmentSetupError

HOOKS = ("build_images", "open_stack", "start_stack", "teardown", "print_keep_up", "run_mode", "Reaper")


class Suite(Protocol):
    """What the runner asks of a suite (each a module-level name of the suite's entry module)."""

    def build_images(self, run_dir: Path, build: bool) -> dict[str, str]: ...    # image -> id; raises EnvironmentSetupError
    def open_stack(self, run_id: str, run_dir: Path) -> Any: ...               # a Stack (harness/stack/protocol.py), not started
    def start_stack(self, stack: Any, args: Any, run_dir: Path, meta: dict, timings: dict) -> None: ...
    def teardown(self, settings: Any, stack: Any, run_dir: Path) -> bool: ...  # True when nothing of the run is left
    def print_keep_up(self, settings: Any, stack: Any, run_dir: Path) -> None: ...
    def run_mode(self, args: Any, settings: Any, stack: Any, run_dir: Path, meta: dict, say: Any) -> int: ...
    def Reaper(self, run_id: str, run_dir: Path) -> Any: ...                   # noqa: N802 - a class hook


def load_suite(compose_file: str | Path | None = None) -> Suite:
    """The suite a compose file names (default: the repository's stack); EnvironmentSetupError names the
    file and the hook when the block names none, the module does not import, or a hook is missing."""
    from harness.stack import DEFAULT_COMPOSE, load
    path = Path(compose_file or DEFAULT_COMPOSE)
    name = load(path).suite
    if not name:
        raise EnvironmentSetupError("no suite", f"{path}: x-apiary.suite names no module for the runner's hooks")
    try:
        module: ModuleType = importlib.import_module(name)
    except ImportError as exc:
        raise EnvironmentSetupError("no suite", f"{path}: x-apiary.suite {name!r} does not import: {exc}") from None
    missing = [h for h in HOOKS if not hasattr(module, h)]
    if missing:
        raise EnvironmentSetupError("no suite", f"{path}: x-apiary.suite {name!r} lacks the hooks {missing}")
    return module    # type: ignore[return-value]
