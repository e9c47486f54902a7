"""The stack's declared reset (x-apiary.reset): the one request that puts a stack back in its known state
between scenarios, sent to the service's HTTP base (where its health check answers). A stack may add
credentials through `reset_headers()`; keys never live in the compose file."""
from __future__ import annotations

from typing import Any

import requests

from harness.stack.topology import Topology

REQUEST_TIMEOUT_S = 5.0


class ResetRefused(requests.HTTPError):
    """The declared reset answered non-2xx (a RequestException: a caller may retry it like no answer)."""


def reset_spec(stack: Any) -> dict:
    """The stack's x-apiary.reset ({} when it declares none)."""
    topology = getattr(stack, "topology", None)
    return topology.reset if isinstance(topology, Topology) else {}


def send_reset(stack: Any, timeout_s: float = REQUEST_TIMEOUT_S) -> int | None:
    """Send the declared reset; its HTTP status, None when none is declared. requests' errors pass
    through and ResetRefused on a non-2xx answer, naming the request, the status and the body's start."""
    spec = reset_spec(stack)
    if not spec:
        return None
    url = stack.http_url(spec["service"]) + spec["path"]
    headers = dict(stack.reset_headers()) if callable(getattr(stack, "reset_headers", None)) else {}
    kwargs: dict = {"json": spec["body"]} if "body" in spec else {}
    r = requests.request(spec["method"], url, headers=headers, timeout=timeout_s, **kwargs)
    if not 200 <= r.status_code < 300:
        raise ResetRefused(f"x-apiary.reset {spec['method']} {url} answered {r.status_code}: {r.text[:300]}",
                           response=r)
    return r.status_code
