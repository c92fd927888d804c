"""The tightest loops, SharedHashMap against dict, interleaved in one run (issue 13's goals):
`for k in keys: get(k)`, `m[k]`, `k in m` and `m[k] = v`, at 1,000 and 10,000 keys, str keys
(64-character str values) and int keys (int values). Each cell: the median of `--rounds`
interleaved rounds (dict, map, dict, map, ...), nanoseconds per operation, and the ratio.

`get` reads entries unchanged since the last pass, so a map's get returns the object it
kept (`value_cache.rs`), as a dict does. `new` is the first get after every entry was
rewritten (each pass follows an untimed pass of sets): the value is built from shared
memory and kept.

    python python/bench/tight_loop.py [--rounds 9]
"""

import argparse
import os
import statistics
import time

from shared_hashmap import SharedHashMap


def loops(store):
    """The four loops over one store, as functions of the key list: `get` bound once (as a
    tuned program would), `store[k]`, `k in store` and `store[k] = v` as written."""
    get = store.get

    def run_get(keys):
        for k in keys:
            get(k)

    def run_getitem(keys):
        for k in keys:
            store[k]

    def run_in(keys):
        for k in keys:
            k in store

    def run_set(keys, value):
        for k in keys:
            store[k] = value

    def run_new(keys, value):
        """Gets after an untimed pass of sets; returns the nanoseconds of the gets."""
        for k in keys:
            store[k] = value
        start = time.perf_counter_ns()
        for k in keys:
            get(k)
        return time.perf_counter_ns() - start

    return {"get": run_get, "[]": run_getitem, "in": run_in, "set": run_set, "new": run_new}


def time_ns(fn, keys, value, repeat, op):
    if op == "new":
        return sum(fn(keys, value) for _ in range(repeat)) / (repeat * len(keys))
    start = time.perf_counter_ns()
    for _ in range(repeat):
        if value is None:
            fn(keys)
        else:
            fn(keys, value)
    return (time.perf_counter_ns() - start) / (repeat * len(keys))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    print(f"{'keys':>6} {'type':>4} {'op':>4} {'dict ns':>8} {'map ns':>8} {'ratio':>6}  (medians of {args.rounds} interleaved rounds)")
    for n in (1_000, 10_000):
        for kind in ("str", "int"):
            keys = [f"key-{i:08d}" for i in range(n)] if kind == "str" else list(range(n))
            value = "v" * 64 if kind == "str" else 12345
            d = {k: value for k in keys}
            name = f"tight-{os.getpid()}"
            m = SharedHashMap(name, capacity=2 * n, max_key_size=32, max_value_size=128)
            for k in keys:
                m[k] = value
            ld, lm = loops(d), loops(m)
            repeat = max(1, 200_000 // n)
            for op in ("get", "[]", "in", "set", "new"):
                val = value if op in ("set", "new") else None
                rd, rm = [], []
                for _ in range(args.rounds):
                    rd.append(time_ns(ld[op], keys, val, repeat, op))
                    rm.append(time_ns(lm[op], keys, val, repeat, op))
                a, b = statistics.median(rd), statistics.median(rm)
                print(f"{n:>6} {kind:>4} {op:>4} {a:>8.1f} {b:>8.1f} {b / a:>5.2f}x")
            m.unlink()
            m.close()


if __name__ == "__main__":
    main()
