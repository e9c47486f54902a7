"""Pipe transport: line and length framing, subprocess stdin/stdout, end of stream, limits; pipe + ZeroMQ."""

from __future__ import annotations

import os
import sys

import pytest

from services.transport import (PipeTransport, PullTransport, PushTransport, TransportClosed, TransportError,
                                TransportOptions)
from services.transport import pipe as pipe_module

pytestmark = pytest.mark.timeout(60)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAYLOADS = [b"plain", b"with\nnewline", b"", b"\x00\xff\x10binary", b"x" * 100_000]

# A child stage: echoes every message back, upper-cased, then exits at end of stream.
ECHO_CHILD = """
import sys
sys.path.insert(0, sys.argv[3])
from services.transport import PipeTransport, TransportClosed
pipe = PipeTransport.from_stdio(framing=sys.argv[1], line_encoding=sys.argv[2])
while True:
    try:
        message = pipe.receive()
    except TransportClosed:
        break
    pipe.send(message.upper())
"""


def pipe_pair(**kwargs) -> tuple[PipeTransport, PipeTransport]:
    """A writer and a reader joined by one os.pipe."""
    read_fd, write_fd = os.pipe()
    return PipeTransport(None, write_fd, **kwargs), PipeTransport(read_fd, None, **kwargs)


@pytest.mark.parametrize("framing,encoding", [("length", "base64"), ("line", "base64")])
def test_framings_round_trip_binary_payloads_through_a_subprocess(framing, encoding):
    argv = [sys.executable, "-c", ECHO_CHILD, framing, encoding, ROOT]
    with PipeTransport.spawn(argv, framing=framing, line_encoding=encoding) as pipe:
        for payload in PAYLOADS[:3]:
            pipe.send(payload)
        assert pipe.send_many(PAYLOADS[3:]) == 2
        got = [pipe.receive(10) for _ in PAYLOADS]
        assert got == [p.upper() for p in PAYLOADS]
        assert pipe.receive(0.05) is None
    assert pipe.process.returncode == 0, "the child did not exit cleanly at end of stream"


def test_raw_lines_interoperate_with_text_tools():
    with PipeTransport.spawn([sys.executable, "-c", "import sys\nfor l in sys.stdin: print(l.strip()[::-1])"],
                             framing="line", line_encoding="raw") as pipe:
        pipe.send_many([b"abc", b"hello"])
        pipe.close_write()  # end of input for the text tool
        assert [pipe.receive(10), pipe.receive(10)] == [b"cba", b"olleh"]
        with pytest.raises(TransportClosed):
            pipe.receive(10)
    writer, reader = pipe_pair(framing="line", line_encoding="raw")
    with writer, reader:
        with pytest.raises(TransportError, match="newline"):
            writer.send(b"two\nlines")


def test_end_of_stream_and_truncated_messages():
    writer, reader = pipe_pair()
    writer.send(b"last")
    writer.close()
    assert reader.receive(1) == b"last"
    with pytest.raises(TransportClosed, match="end of stream"):
        reader.receive(1)
    reader.close()
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"\x00\x00\x00\x10abc")  # announces 16 bytes, delivers 3
    os.close(write_fd)
    with PipeTransport(read_fd) as truncated:
        with pytest.raises(TransportError, match="inside a message"):
            truncated.receive(1)


def test_timeout_and_max_message_size():
    writer, reader = pipe_pair(options=TransportOptions(max_message_size=10, receive_timeout_ms=50))
    with writer, reader:
        assert reader.receive() is None  # receive_timeout_ms applies when timeout is None
        assert reader.receive(0) is None
        writer.send(b"0123456789")
        assert reader.receive(1) == b"0123456789"
        writer.send(b"01234567890")
        with pytest.raises(TransportError, match="max_message_size"):
            reader.receive(1)
        assert reader.get_stats()["errors"] == 1


def test_fd_addresses_and_bad_addresses():
    read_fd, write_fd = os.pipe()
    with PipeTransport() as pipe:
        assert pipe.connect(f"pipe://fd/{read_fd}/{write_fd}") == f"pipe://fd/{read_fd}/{write_fd}"
        pipe.send(b"loop")
        assert pipe.receive(1) == b"loop"
        with pytest.raises(ValueError, match="pipe://stdio"):
            pipe.bind("pipe://nowhere")
    with pytest.raises(OSError):
        os.fstat(read_fd)  # closed with the transport


def test_close_stops_a_child_that_ignores_end_of_input(monkeypatch):
    monkeypatch.setattr(pipe_module, "PROCESS_EXIT_TIMEOUT_S", 0.2)
    pipe = PipeTransport.spawn([sys.executable, "-c", "import threading; threading.Event().wait()"])
    pipe.close()
    assert pipe.process.returncode is not None and pipe.process.returncode != 0


def test_pipe_and_zeromq_stages_in_one_pipeline(make, address, threads):
    """pipe source (child) -> bridge -> PUSH -> 2 workers -> PUSH -> sink PULL -> pipe (child sums)."""
    count = 2000
    source = PipeTransport.spawn([sys.executable, "-c", (
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "from services.transport import PipeTransport\n"
        "pipe = PipeTransport.from_stdio(framing='line')\n"
        "pipe.send_many(b'%d' % i for i in range(int(sys.argv[1])))\n"), str(count), ROOT], framing="line")
    summer = PipeTransport.spawn([sys.executable, "-c", (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from services.transport import PipeTransport, TransportClosed\n"
        "pipe = PipeTransport.from_stdio()\n"
        "seen = []\n"
        "while True:\n"
        "    try: seen.append(int(pipe.receive().split(b':')[0]))\n"
        "    except TransportClosed: break\n"
        "pipe.send(b'%d %d %d' % (len(seen), len(set(seen)), sum(seen)))\n"), ROOT])
    tasks, results = make(PushTransport), make(PullTransport)
    tasks_address = tasks.bind(address("ipc", "tasks"))
    results_address = results.bind(address("inproc", "results"))
    workers = []
    for n in range(2):
        pull, push = make(PullTransport), make(PushTransport)
        pull.connect(tasks_address)
        push.connect(results_address)
        workers.append((n, pull, push))
    tasks.wait_for_peers(2, timeout=10)

    def work(n: int, pull: PullTransport, push: PushTransport) -> None:
        while (message := pull.receive(1.0)) is not None:
            push.send(message + b":w%d" % n)

    for worker in workers:
        threads(work, *worker)
    with source:
        while True:  # the bridge: a pipe stage feeding ZeroMQ
            try:
                tasks.send(source.receive(10))
            except TransportClosed:
                break
    with summer:
        for _ in range(count):
            message = results.receive(10)
            assert message is not None, "a message was lost between the pipe and the sink"
            summer.send(message)
        summer.close_write()
        total, unique, checksum = summer.receive(10).split()
    assert (int(total), int(unique), int(checksum)) == (count, count, sum(range(count)))
    assert results.receive(0.2) is None, "a message was duplicated"


@pytest.mark.parametrize("framing", ["length", "line"])
def test_messages_straddling_reads_are_reassembled(framing, threads):
    """Random sizes (0 B .. 200 KB) through a real pipe: every read boundary case is hit."""
    sizes = [0, 1, 3, 4, 5, 100, 1000, 65_535, 65_536, 70_000, 200_000]
    messages = [bytes([i % 251]) * sizes[(i * 7) % len(sizes)] for i in range(300)]
    writer, reader = pipe_pair(framing=framing)

    def produce() -> None:
        for i, message in enumerate(messages):
            writer.send(message) if i % 3 else writer.send_many([message])
        writer.close()

    threads(produce)
    got = []
    with reader:
        while True:
            try:
                got.append(reader.receive(10))
            except TransportClosed:
                break
    assert got == messages
