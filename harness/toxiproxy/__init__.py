"""A Toxiproxy-compatible TCP proxy in Python (asyncio): Toxiproxy's toxics (toxics.py), its proxy
(proxy.py) and its HTTP API (api.py), so Toxiproxy's clients drive it unmodified. Run it with
`python -m harness.toxiproxy --listen 0.0.0.0:8474`; the harness embeds it (ToxiServer.start())."""
from harness.toxiproxy.api import ToxiServer
from harness.toxiproxy.proxy import Proxy
from harness.toxiproxy.toxics import KINDS, ApiError, make_toxic

__all__ = ["KINDS", "ApiError", "Proxy", "ToxiServer", "make_toxic"]
