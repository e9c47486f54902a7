"""Toxiproxy benchmark: the Python proxy's cost with no toxic next to a direct connection, and the
accuracy of its latency and bandwidth toxics, on loopback, in one run.

    python -m bench.toxiproxy            # full run (~1 min), writes reports/bench/toxiproxy.json
    python -m bench.toxiproxy --quick    # smaller counts (smoke test)

Method: the upstream (echo / sink / source) and the proxy each run in a process of their own (fork),
the client in this one. Round trip: 100 B echoed on one connection, direct and proxied alternating
--repeat times, p50/p99 of each repeat, then the medians and the proxied/direct ratio. Throughput: 32 MiB
one way, client -> sink, the sink times first to last byte. Latency accuracy: the median added round
trip with `latency` L downstream, minus the direct median, for L in 5..500 ms. Bandwidth accuracy: the
rate a 100 ms .. 2 s download observes against `rate`.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import time

import requests

from bench.common import machine_info, ms, percentile
from apiary_suite.stackops import free_port

RESULT_PATH = os.path.join("reports", "bench", "toxiproxy.json")
CTX = mp.get_context("fork")


def upstream_main(sock: socket.socket) -> None:
    """ECHO\\n: echo; SINK\\n: read to EOF, answer '<bytes> <seconds first..last>'; SEND n\\n: send n bytes."""
    import threading

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            head = b""
            while b"\n" not in head:
                part = conn.recv(64)
                if not part:
                    return
                head += part
            line, rest = head.split(b"\n", 1)
            if line == b"SINK":
                n, first = len(rest), time.perf_counter()
                last = first
                while data := conn.recv(1 << 20):
                    n, last = n + len(data), time.perf_counter()
                conn.sendall(f"{n} {last - first}".encode())
            elif line.startswith(b"SEND "):
                conn.sendall(b"x" * int(line.split()[1]))
            else:
                if rest:
                    conn.sendall(rest)
                while data := conn.recv(65536):
                    conn.sendall(data)

    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def proxy_main(api_port: int) -> None:
    import asyncio
    from harness.toxiproxy import ToxiServer

    async def run() -> None:
        await ToxiServer().serve("127.0.0.1", api_port)
        await asyncio.Event().wait()
    asyncio.run(run())


def connect(port: int, mode: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(mode)
    return s


def rtts(port: int, n: int) -> list[float]:
    """n round trips of 100 B on one echo connection (after 20 warm-ups)."""
    payload, out = b"p" * 100, []
    with connect(port, b"ECHO\n") as s:
        for i in range(n + 20):
            t0 = time.perf_counter()
            s.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(s.recv(65536))
            if i >= 20:
                out.append(time.perf_counter() - t0)
    return out


def throughput(port: int, size: int) -> float:
    """MB/s a sink measured for `size` bytes sent in 256 KiB writes."""
    block = b"t" * (256 << 10)
    with connect(port, b"SINK\n") as s:
        for _ in range(size // len(block)):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        n, secs = s.recv(100).split()
    return int(n) / float(secs) / 1e6


def download_rate(port: int, size: int) -> float:
    """KB/s of a download of `size` bytes, from the request to the last byte."""
    t0 = time.perf_counter()
    with connect(port, b"SEND %d\n" % size) as s:
        got = 0
        while data := s.recv(1 << 20):
            got += len(data)
        return got / (time.perf_counter() - t0) / 1000


def summary(values: list[float]) -> dict:
    return {"p50_ms": ms(percentile(values, 50)), "p99_ms": ms(percentile(values, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=RESULT_PATH)
    args = ap.parse_args()
    repeat, n_rtt, size = (2, 300, 8 << 20) if args.quick else (args.repeat, 2000, 32 << 20)
    info = machine_info()

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    up_port, api_port = lsock.getsockname()[1], free_port()
    procs = [CTX.Process(target=upstream_main, args=(lsock,), daemon=True),
             CTX.Process(target=proxy_main, args=(api_port,), daemon=True)]
    for p in procs:
        p.start()
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                r = requests.post(api + "/proxies", json={"name": "b", "upstream": f"127.0.0.1:{up_port}"}, timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("the proxy's API did not answer within 10 s")
                time.sleep(0.05)
        px_port = int(r.json()["listen"].rsplit(":", 1)[1])
        result = {"machine": info, "repeat": repeat, "rtt_samples_per_repeat": n_rtt, "throughput_bytes": size}

        runs = []
        for _ in range(repeat):
            d, p = rtts(up_port, n_rtt), rtts(px_port, n_rtt)
            td, tp = throughput(up_port, size), throughput(px_port, size)
            runs.append({"direct": {**summary(d), "mb_s": round(td, 1)}, "proxied": {**summary(p), "mb_s": round(tp, 1)}})
        med = lambda side, key: statistics.median(r[side][key] for r in runs)  # noqa: E731
        result["overhead"] = {
            "direct": {k: med("direct", k) for k in ("p50_ms", "p99_ms", "mb_s")},
            "proxied": {k: med("proxied", k) for k in ("p50_ms", "p99_ms", "mb_s")},
            "ratio_proxied_over_direct": {k: round(med("proxied", k) / med("direct", k), 2) for k in ("p50_ms", "p99_ms", "mb_s")},
            "added_p50_us_per_round_trip": round((med("proxied", "p50_ms") - med("direct", "p50_ms")) * 1000, 1),
            "runs": runs}

        base = statistics.median(rtts(up_port, 200))
        accuracy = []
        for lat in (5, 20, 100, 500):
            requests.post(api + "/proxies/b/toxics", json={"name": "lat", "type": "latency", "attributes": {"latency": lat}}, timeout=5)
            got = rtts(px_port, 5 if lat >= 500 or args.quick else 20)
            requests.delete(api + "/proxies/b/toxics/lat", timeout=5)
            added = (statistics.median(got) - base) * 1000
            accuracy.append({"latency_ms": lat, "added_p50_ms": round(added, 3), "error_ms": round(added - lat, 3)})
        result["latency_accuracy"] = accuracy

        bw = []
        for rate in (100, 1000, 10000):
            requests.post(api + "/proxies/b/toxics", json={"name": "bw", "type": "bandwidth", "attributes": {"rate": rate}}, timeout=5)
            got = download_rate(px_port, int(rate * 1000 * (0.5 if args.quick else 1.5)))
            requests.delete(api + "/proxies/b/toxics/bw", timeout=5)
            bw.append({"rate_kb_s": rate, "observed_kb_s": round(got, 1), "ratio": round(got / rate, 3)})
        result["bandwidth_accuracy"] = bw
        result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        for p in procs:
            p.kill()
            p.join(5)
        lsock.close()

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    o = result["overhead"]
    print(f"round trip p50: direct {o['direct']['p50_ms']} ms, proxied {o['proxied']['p50_ms']} ms "
          f"(+{o['added_p50_us_per_round_trip']} µs, x{o['ratio_proxied_over_direct']['p50_ms']}); "
          f"p99 {o['direct']['p99_ms']} vs {o['proxied']['p99_ms']} ms")
    print(f"throughput: direct {o['direct']['mb_s']} MB/s, proxied {o['proxied']['mb_s']} MB/s "
          f"(x{o['ratio_proxied_over_direct']['mb_s']})")
    print("latency accuracy:", ", ".join(f"{a['latency_ms']} ms -> {a['added_p50_ms']:+.2f}" for a in accuracy))
    print("bandwidth accuracy:", ", ".join(f"{b['rate_kb_s']} KB/s -> x{b['ratio']}" for b in bw))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
