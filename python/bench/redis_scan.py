"""How long another client waits on the server while one process copies a big map on Redis.

A Redis server runs one command at a time: while it builds the reply of one `HGETALL` of a
million entries, every other client waits. `copy()` (and keys(), values(), items(), iteration)
now scan in `HSCAN` chunks instead. This measures what another client sees: a second process
sends `PING` after `PING` on its own connection during `m.copy()`, and we report the longest
wait, beside the copy's own time.

    python python/bench/redis_scan.py [--url redis://127.0.0.1:PORT/0] [--entries 1000000]
                                      [--rounds 3]

Without --url it starts a private `redis-server` on a free loopback port. With --url the map
(`scan-bench-N`) is filled once and kept, so builds can be compared on one server by running
this with each build's Python in turn (results/2026-12-06-epyc-2cpu/redis-scan.md).
"""

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlparse

from shared_hashmap import SharedHashMap


def pinger(host, port, ready, stop, out):
    """PINGs until told to stop; sends back the longest wait and the count."""
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    worst, count, waits = 0.0, 0, []
    ready.set()
    while not stop.is_set():
        t = time.perf_counter()
        s.sendall(b"PING\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            got += s.recv(64)
        dt = time.perf_counter() - t
        worst = max(worst, dt)
        waits.append(dt)
        count += 1
    waits.sort()
    out.put((worst, count, waits[len(waits) // 2] if waits else 0.0))
    s.close()


def start_server():
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: give --url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="shmap-scan-bench-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, d, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, tmp, url = start_server()
    try:
        n = args.entries
        m = SharedHashMap(f"scan-bench-{n}", capacity=n, max_key_size=32, max_value_size=64,
                          url=url, exist_ok=True, timeout=60)
        if len(m) != n:
            m.clear()
            for start in range(0, n, 10_000):
                m.update({f"key-{i}": f"value-{i:>20}" for i in range(start, min(n, start + 10_000))})
        u = urlparse(url)
        ctx = mp.get_context("spawn")
        for r in range(args.rounds):
            ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
            p = ctx.Process(target=pinger, args=(u.hostname, u.port, ready, stop, out))
            p.start()
            ready.wait()
            time.sleep(0.2)
            t = time.perf_counter()
            got = m.copy()
            took = time.perf_counter() - t
            time.sleep(0.2)
            stop.set()
            worst, count, median = out.get()
            p.join()
            assert len(got) == n, len(got)
            print(f"round {r + 1}: copy of {n:,} entries {took:.2f} s; another client's longest "
                  f"PING wait {worst * 1e3:.1f} ms (median {median * 1e6:.0f} us, {count:,} PINGs)",
                  flush=True)
            del got
        m.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
