"""Generic checker steps: check_register over the world's history, the verdict kept in the world; a failed
assertion carries the anomalies (or the reason the verdict is unknown)."""
from __future__ import annotations

import json

from behave import step

from harness.behave.world import say
from harness.checkers.linearizable import check_register

CHECK_TIMEOUT_S = 30.0


def verdict_of(context) -> dict:
    """check_register over the world's history, stored as world.verdict."""
    verdict = context.world.verdict = check_register(context.world.history.ops, timeout_s=CHECK_TIMEOUT_S)
    unknown = sum(k.get("unknown_outcome", 0) for k in verdict["per_key"].values())
    say(f"[checker] check_register: {verdict['valid']} over {verdict['ops']} ops on {verdict['keys']} key(s) "
        f"({unknown} of unknown outcome) in {verdict.get('seconds')} s")
    return verdict


def summary(verdict: dict) -> str:
    """The verdict without its per-key detail, as JSON (the assertion message)."""
    return json.dumps({k: v for k, v in verdict.items() if k != "per_key"}, default=str)[:6000]


@step("the history is linearizable")
def history_linearizable(context):
    """Then the history is linearizable"""
    verdict = verdict_of(context)
    assert verdict["valid"] is True, f"check_register found the history {verdict['valid']}: {summary(verdict)}"


@step("the history is not linearizable, with a stale read named")
def history_has_stale_read(context):
    """Then the history is not linearizable, with a stale read named"""
    verdict = verdict_of(context)
    assert verdict["valid"] is False, f"check_register did not fail (a @selftest must): {summary(verdict)}"
    stale = [a for a in verdict["anomalies"] if a.get("kind") == "stale-read"]
    assert stale, f"no stale-read among the anomalies: {summary(verdict)}"
    for a in stale:
        assert a["op"].get("invoke_index") is not None, f"a stale read that names no op: {a}"
        assert a["value_read"] not in a["linearizable_values"], f"a stale read that could have been read: {a}"
    context.world.vars["stale_reads"] = [a["detail"] for a in stale]
