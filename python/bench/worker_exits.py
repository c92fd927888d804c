"""What a worker process's end costs the writers that go on: a map of `--entries` entries,
then `--workers` forked workers one after another, each attaching, writing 100 sets and 100
deletes of its own keys, and then ending without closing the map: SIGKILLed while idle
(`--how kill`) or by `os._exit` (`--how exit`, as a worker whose map is a global left open
does). After each, the parent writes 3,000 sets and deletes. Prints the longest single write
of each worker and of the parent after it, in ms.

A worker's first write drains the magazines of the one before (the blocks a handle keeps for
its own next allocations). When every such drain asked for a sweep of the heap, the next
writer swept: every writer stopped for a walk of the whole heap (~46 ms at 1M entries).

    python3 python/bench/worker_exits.py --entries 1000000 --workers 6 --how kill
"""
import argparse
import multiprocessing as mp
import os
import signal
import time

from shared_hashmap import SharedHashMap


def worker(name, i, ready, worst, how):
    m = SharedHashMap(name, create=False)
    longest = 0.0
    for j in range(200):
        t = time.perf_counter()
        m[f"w{i}-{j}"] = "x" * 40
        if j % 2:
            del m[f"w{i}-{j}"]
        longest = max(longest, time.perf_counter() - t)
    worst.value = longest * 1e3
    ready.set()
    if how == "kill":
        time.sleep(60)  # SIGKILLed here, between operations
    os._exit(0)  # no finalizer runs: the map is never closed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--how", choices=["kill", "exit"], default="kill")
    args = ap.parse_args()
    ctx = mp.get_context("fork")
    name = f"worker-exits-{os.getpid()}"
    m = SharedHashMap(name, create=True)
    try:
        for i in range(args.entries):
            m[f"key-{i}"] = "v" * 40
        rows = []
        for w in range(args.workers):
            ready, worst = ctx.Event(), ctx.Value("d", 0.0)
            p = ctx.Process(target=worker, args=(name, w, ready, worst, args.how))
            p.start()
            ready.wait()
            if args.how == "kill":
                os.kill(p.pid, signal.SIGKILL)
            p.join()
            longest = 0.0
            for j in range(3000):
                t = time.perf_counter()
                m[f"p-{w}-{j}"] = "y" * 40
                del m[f"p-{w}-{j}"]
                longest = max(longest, time.perf_counter() - t)
            rows.append((worst.value, longest * 1e3))
        print(
            f"{args.entries} entries, workers ended by {args.how}: longest write (ms), "
            "worker/parent after it:",
            " ".join(f"{a:.1f}/{b:.1f}" for a, b in rows),
        )
    finally:
        m.unlink()


if __name__ == "__main__":
    main()
