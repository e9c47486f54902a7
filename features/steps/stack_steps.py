"""Steps over the stack itself: container/process state, orchestrator /health and /ready, the
hives and workers /v1/workers lists. Every Then asserts on observed state."""
import requests
from behave import then


def ready_by_hive(cluster) -> dict:
    """hive -> sorted ready workers, as /v1/workers (admin) reports them."""
    body = requests.get(cluster.api_url + "/v1/workers", headers=cluster.admin(), timeout=5).json()
    out = {h["id"]: [] for h in body.get("hives", []) if h.get("state") == "ready"}
    for w in body.get("workers", []):
        if w.get("state") == "ready":
            out.setdefault(w.get("hive"), []).append(w["id"])
    return {h: sorted(ws) for h, ws in out.items()}


@then("every service of the stack is running and healthy within {seconds:d} seconds")
def step_all_healthy(context, seconds):
    context.world.cluster.wait_reported_healthy(seconds)


@then("the orchestrator answers {code:d} on {path}")
def step_orchestrator_answers(context, code, path):
    assert (got := requests.get(context.world.cluster.api_url + path, timeout=5).status_code) == code, f"GET {path}: {got}, expected {code}"


@then("/v1/workers lists {n:d} ready workers across {h:d} hives")
def step_workers_listed(context, n, h):
    view = ready_by_hive(context.world.cluster)
    assert len(view) == h and sum(map(len, view.values())) == n, f"expected {n} ready workers in {h} hives, got {view}"
