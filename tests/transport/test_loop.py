"""LoopSocket: ZeroMQ I/O on the asyncio loop without zmq.asyncio — no lost edge, bounded bursts, errors reported."""
import asyncio
import socket

import pytest
import zmq

from services.transport.loop import LoopSocket, bound_port, make_dealer, make_router

pytestmark = pytest.mark.timeout(60)


async def _until(condition, timeout_s: float, what: str) -> None:
    """Wait on the loop until condition() holds, failing with `what` after the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"within {timeout_s}s: {what}")
        await asyncio.sleep(0.005)


def _pair(ctx):
    router = make_router(ctx, "tcp://127.0.0.1:*")
    dealer = make_dealer(ctx, "d1", f"tcp://127.0.0.1:{bound_port(router)}")
    return router, dealer


def test_echo_round_trips_from_handlers_and_from_outside_lose_nothing():
    """5,000 requests sent from a task and echoed from the handler all come back in order (no kick())."""
    async def main():
        ctx = zmq.Context()
        router_sock, dealer_sock = _pair(ctx)
        got: list[int] = []
        router = LoopSocket(router_sock, lambda parts: router.send([parts[0], parts[1]]), name="router")
        dealer = LoopSocket(dealer_sock, lambda parts: got.append(int(parts[0])), name="dealer")
        await asyncio.wrap_future(asyncio.ensure_future(dealer.send_when_connected([b"-1"])))
        for i in range(5000):
            assert dealer.send([str(i).encode()])
            if i % 100 == 0:
                await asyncio.sleep(0)
        await _until(lambda: len(got) == 5001, 20, f"5001 echoes (got {len(got)})")
        assert got == list(range(-1, 5000))
        router.close()
        dealer.close()
        ctx.term()
    asyncio.run(main())


def test_a_backlog_is_drained_in_bursts_so_other_callbacks_run():
    """With 1,000 queued messages the loop runs other callbacks after the first burst."""
    async def main():
        ctx = zmq.Context()
        router_sock, dealer_sock = _pair(ctx)
        seen: list[int] = []
        marks: list[int] = []
        raw = ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(router_sock.getsockopt(zmq.LAST_ENDPOINT).decode())
        for i in range(1000):
            raw.send(str(i).encode())
        await _until(lambda: router_sock.getsockopt(zmq.EVENTS) & zmq.POLLIN, 5, "the backlog to arrive")
        await asyncio.sleep(0.2)
        router = LoopSocket(router_sock, lambda parts: seen.append(int(parts[1])), burst=64)
        asyncio.get_running_loop().call_soon(lambda: marks.append(len(seen)))
        await _until(lambda: len(seen) == 1000, 10, "all 1000 messages handled")
        assert marks and marks[0] <= 128, f"other callback ran only after {marks} messages"
        router.close()
        raw.close()
        dealer_sock.close()
        ctx.term()
    asyncio.run(main())


def test_send_to_a_vanished_router_peer_fails_with_ehostunreach():
    """ROUTER_MANDATORY: a send to an unknown identity returns False and says why."""
    async def main():
        ctx = zmq.Context()
        router_sock, dealer_sock = _pair(ctx)
        router = LoopSocket(router_sock, lambda parts: None)
        assert router.send([b"nobody", b"x"]) is False
        assert router.errno == zmq.EHOSTUNREACH
        router.close()
        dealer_sock.close()
        ctx.term()
    asyncio.run(main())


def test_send_when_connected_waits_for_the_peer_and_close_cancels():
    """Frames for a DEALER with no connection yet wait, are delivered once the ROUTER binds; close cancels."""
    async def main():
        ctx = zmq.Context()
        # Hold the port with a bound, never-listening socket: connects are refused, and the kernel
        # cannot hand the port out as the DEALER's own source port (a TCP self-connect would
        # complete a DEALER-to-itself handshake and "deliver" the frames with no ROUTER at all).
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        dealer = LoopSocket(make_dealer(ctx, "late", f"tcp://127.0.0.1:{port}"), lambda parts: None)
        fut = dealer.send_when_connected([b"hello"])
        await asyncio.sleep(0.2)
        assert not fut.done(), "no peer yet: the frames must wait"
        got: list[list] = []
        holder.close()
        router = LoopSocket(make_router(ctx, f"tcp://127.0.0.1:{port}"), got.append)
        await asyncio.wait_for(fut, 10)
        await _until(lambda: got, 5, "the waiting frames to reach the ROUTER")
        assert got[0] == [b"late", b"hello"]
        other = LoopSocket(make_dealer(ctx, "never", "tcp://127.0.0.1:1"), lambda parts: None)
        pending = other.send_when_connected([b"x"])
        other.close()
        assert pending.cancelled()
        router.close()
        dealer.close()
        ctx.term()
    asyncio.run(main())
