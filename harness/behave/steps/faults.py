"""Generic fault steps over the kit's nemesis REGISTRY: apply, prove, heal (each recorded in the history)."""
from __future__ import annotations

import json

from behave import step


@step('the fault "{kind}" is applied to "{target}"')
def apply_fault(context, kind, target):
    """When the fault "partition" is applied to "{leader}|*" """
    context.world.apply(kind, context.world.resolve(target))


@step('the fault "{kind}" is applied to "{target}" with {params}')
def apply_fault_with(context, kind, target, params):
    """When the fault "loss" is applied to "etcd1|etcd2" with {"percent": 100}"""
    try:
        parsed = json.loads(params)
    except ValueError as exc:
        raise AssertionError(f"fault params are not a JSON object: {params!r} ({exc})") from None
    assert isinstance(parsed, dict), f"fault params must be a JSON object, not {params!r}"
    context.world.apply(kind, context.world.resolve(target), **parsed)


@step("the fault proved it took effect")
def fault_held(context):
    """Then the fault proved it took effect"""
    proof = context.world.verify_last()
    assert proof["held"], f"{context.world.faults[-1]!r} did not hold: {proof['evidence']}"


@step("every fault is healed")
def heal_every_fault(context):
    """When every fault is healed"""
    context.world.heal_all()


@step("every fault was healed")
def every_fault_healed(context):
    """Then every fault was healed"""
    w = context.world
    assert w.left is not None, "no step healed the faults (When every fault is healed)"
    assert w.left == [] and not w.active, f"could not undo {w.left}; still active {w.active}"
