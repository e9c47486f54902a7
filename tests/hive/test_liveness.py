"""The hive's sweep in-process: its own stalled loop is not its peers' silence; real silence is still caught."""
from __future__ import annotations

import asyncio
import time

from services.worker_manager.config import HiveConfig
from services.worker_manager.hive import Hive


def test_own_loop_stall_is_not_peer_silence(tmp_path):
    async def main():
        hive = Hive(HiveConfig(interval_s=0.05, liveness=4, model_cache=str(tmp_path / "models")))
        sent, lost = [], []
        hive.send_up = lambda command, body, force=False: sent.append((command, body))
        hive.send_down = lambda ident, command, body: True
        hive.peer.lose = lambda reason: (lost.append(reason), setattr(hive.peer, "registered", False))
        hive.peer.retry_registration = lambda now: None
        hive.peer.registered = True
        hive.table.add(b"w1", {"model": "m", "slots": 1})
        task = asyncio.ensure_future(hive.peer.tick_loop())
        try:
            await asyncio.sleep(0.05)
            hive.table.liveness.touch(b"w1")  # both peers just spoke
            hive.peer.liveness.touch()
            time.sleep(0.5)  # our loop is blocked 2.5 x the expiry (0.2 s): their frames would wait unread
            await asyncio.sleep(0.05)
            assert b"w1" in hive.table.workers and not lost, "our own stall was counted as peer silence"
            assert hive.peer.stall.stalls >= 1
            silent_at = time.monotonic()
            while (b"w1" in hive.table.workers or not lost) and time.monotonic() - silent_at < 5:
                await asyncio.sleep(0.02)  # a healthy loop still detects silent peers after the expiry
            assert b"w1" not in hive.table.workers and lost == ["silent"]
        finally:
            task.cancel()
            hive.ctx.term()
    asyncio.run(main())
