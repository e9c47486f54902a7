"""behave hooks for any kit stack, one line each in a suite's environment.py:

    def before_all(context):      hooks.install(context, lambda run_id: ComposeStack(run_id, FILE), build=[...])
    def before_scenario(context, scenario): hooks.open_world(context)
    def after_scenario(context, scenario):  hooks.close_world(context)
    def after_all(context):       hooks.teardown(context)

install() builds (optional), starts the stack once and registers its down() with atexit too, so the stack
goes even when behave never reaches after_all (a crash, Ctrl-C during start-up). open_world() resets the
stack where its compose file declares how (x-apiary.reset) and gives each scenario a fresh KitWorld;
close_world() heals every fault still active and fails the scenario if anything could not be undone
(after the stack's own heal, so the next scenario starts whole)."""
from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import time
from typing import Any, Callable, Sequence

from harness.behave.world import KitWorld
from harness.errors import EnvironmentSetupError
from harness.stack.reset import reset_spec

RUN_ID_ENV = "APIARY_KIT_RUN_ID"     # the run id the stack is labelled with (default: kit-<6 hex>)
UP_TIMEOUT_S = 120.0


def run_id() -> str:
    """The run's id: $APIARY_KIT_RUN_ID, else a fresh kit-<hex>."""
    return os.environ.get(RUN_ID_ENV) or f"kit-{secrets.token_hex(3)}"


def build(command: Sequence[str], timeout_s: float = 900) -> str:
    """Run a build command; returns its last stdout line, EnvironmentSetupError with its stderr tail otherwise."""
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentSetupError("build failed", f"{list(command)}: {exc!r}") from exc
    if proc.returncode != 0:
        raise EnvironmentSetupError("build failed", f"{list(command)} exit {proc.returncode}: {proc.stderr[-1500:]}")
    return (proc.stdout.strip().splitlines() or [""])[-1]


def install(context: Any, stack_factory: Callable[[str], Any], build_command: Sequence[str] | None = None,
            up_timeout_s: float = UP_TIMEOUT_S) -> Any:
    """before_all: build, make the stack (stack_factory(run_id)), start it once; down() is sure to run."""
    context.kit_left = None
    if build_command:
        context.kit_image = build(build_command)
    context.kit_run_id = run_id()
    stack = stack_factory(context.kit_run_id)
    context.stack = stack
    atexit.register(_teardown_quietly, context)
    started = time.monotonic()
    try:
        stack.up(timeout_s=up_timeout_s)
    except BaseException:
        teardown(context)
        raise
    context.kit_up_s = round(time.monotonic() - started, 3)
    return stack


def open_world(context: Any) -> KitWorld:
    """before_scenario: the stack back in its declared known state (heal, healthy, x-apiary.reset) when
    its compose file declares a reset, then a fresh KitWorld over it."""
    if reset_spec(context.stack):
        context.kit_reset_s = round(context.stack.reset(), 3)
    context.world = KitWorld(context.stack)
    return context.world


def close_world(context: Any) -> None:
    """after_scenario: heal every fault still active; AssertionError naming what could not be undone."""
    world = getattr(context, "world", None)
    if world is None or not world.active:
        return
    left = world.heal_all()
    if left:
        context.stack.heal()
        raise AssertionError(f"faults left after the scenario could not be undone: {left}")


def teardown(context: Any) -> None:
    """after_all: down() the stack once; AssertionError naming what its label sweep could not remove."""
    stack = getattr(context, "stack", None)
    if stack is None or getattr(context, "kit_left", None) is not None:
        return
    context.kit_left = ["down() did not finish"]
    try:
        context.kit_left = list(stack.down())
    finally:
        atexit.unregister(_teardown_quietly)
    if context.kit_left:
        raise AssertionError(f"the stack's down() left {context.kit_left}")


def _teardown_quietly(context: Any) -> None:
    """atexit: the same down(), for a run that never reached after_all."""
    try:
        teardown(context)
    except Exception:  # noqa: BLE001 - the interpreter is exiting: nothing is left to tell
        pass
