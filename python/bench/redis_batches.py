"""Many entries in one call on a Redis map: `update` of 1,000 entries and `copy` of them, with
SharedHashMap(url=) and with hand-written redis-py doing the same in one round trip each
(HSET with a mapping; HGETALL decoded to a dict of str). Also what one round trip costs
(a get of one key) for both. One private redis-server on loopback, the two interleaved
(A B A B ...), medians with the slowest and fastest round.

    python python/bench/redis_batches.py --out results/python
"""

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from compare import RedisServer, cpu_model  # noqa: E402

N = 1000
DATA = {f"key-{i:06d}": "v" * 64 for i in range(N)}


def ours(url, name):
    from shared_hashmap import SharedHashMap

    m = SharedHashMap(name, capacity=4 * N, max_key_size=32, max_value_size=128, url=url)
    m.update(DATA)
    return {
        "update 1,000": lambda: m.update(DATA),
        "copy 1,000": m.copy,
        "get (one round trip)": lambda: m.get("key-000001"),
    }, m.unlink


def by_hand(url, name):
    import redis

    r = redis.Redis.from_url(url, decode_responses=True)
    r.hset(name, mapping=DATA)
    return {
        "update 1,000": lambda: r.hset(name, mapping=DATA),
        "copy 1,000": lambda: r.hgetall(name),
        "get (one round trip)": lambda: r.hget(name, "key-000001"),
    }, lambda: r.delete(name)


def timed(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/python")
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    RedisServer.start()
    try:
        url = RedisServer.need()
        a, drop_a = ours(url, f"batch-ours-{os.getpid()}")
        b, drop_b = by_hand(url, f"batch-hand-{os.getpid()}")
        times = {(who, op): [] for who in ("url=", "redis-py") for op in a}
        for _ in range(args.rounds):
            for op in a:
                calls = 2000 if op.startswith("get") else 50
                for who, ops in (("url=", a), ("redis-py", b)):  # interleaved
                    times[(who, op)].append(timed(ops[op], calls))
        drop_a()
        drop_b()
    finally:
        RedisServer.stop()
    machine = f"{cpu_model()}, {os.cpu_count()} cpus, Linux {platform.release()}, Python {platform.python_version()}"
    lines = [f"Machine: {machine}; one private redis-server on TCP loopback; {args.rounds} rounds, "
             "the two interleaved; median (fastest-slowest) time per call.", "",
             "| operation | SharedHashMap(url=) | redis-py by hand | url= / by hand |", "|---|---|---|---|"]

    def fmt(xs):
        return f"{statistics.median(xs) * 1e6:,.0f} us ({min(xs) * 1e6:,.0f}-{max(xs) * 1e6:,.0f})"

    for op in a:
        x, y = times[("url=", op)], times[("redis-py", op)]
        lines.append(f"| {op} | {fmt(x)} | {fmt(y)} | {statistics.median(x) / statistics.median(y):.2f}x |")
    lines += ["", "update and copy are one round trip each on both sides (test_redis.py checks ours "
              "with INFO commandstats); ours also checks, in the same script, that the map exists "
              "and has room, and leaves it unchanged when it has not."]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "redis_batches.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
