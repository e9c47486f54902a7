"""The worker's sweep in-process: its own stalled loop is not the hive's silence; real silence is still caught."""
from __future__ import annotations

import asyncio
import time

from services.mock_worker.config import WorkerConfig
from services.mock_worker.worker import Worker


def test_own_loop_stall_is_not_hive_silence():
    async def main():
        worker = Worker(WorkerConfig(interval_s=0.05, liveness=4))
        sent, lost = [], []
        worker.peer.send = lambda command, body: sent.append(command)
        worker.peer.lose = lambda reason: (lost.append(reason), setattr(worker.peer, "registered", False))
        worker.peer.registered = worker.loaded = True
        task = asyncio.ensure_future(worker.peer.tick_loop())
        try:
            await asyncio.sleep(0.05)
            worker.peer.liveness.touch()  # the hive just spoke
            time.sleep(0.5)  # our loop is blocked 2.5 x the expiry (0.2 s): its frames would wait unread
            await asyncio.sleep(0.05)
            assert not lost, "our own stall was counted as the hive's silence"
            assert worker.peer.stall.stalls >= 1 and sent
            silent_at = time.monotonic()
            while not lost and time.monotonic() - silent_at < 5:
                await asyncio.sleep(0.02)  # a healthy loop still detects a silent hive after the expiry
            assert lost == ["silent"]
        finally:
            task.cancel()
            worker.ctx.term()
    asyncio.run(main())
