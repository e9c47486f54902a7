"""`python -m harness.toxiproxy [--listen HOST:PORT]`: serve Toxiproxy's API until SIGINT/SIGTERM."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from harness.toxiproxy.api import ToxiServer
from harness.toxiproxy.proxy import split_addr


async def main(listen: str) -> None:
    host, port = split_addr(listen, "listen")
    server = ToxiServer()
    bound = await server.serve(host, port)
    print(f"toxiproxy API on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m harness.toxiproxy", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:8474", help="API address (default 127.0.0.1:8474)")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.listen))
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, for a bad address
        sys.exit(f"toxiproxy: {exc}")
