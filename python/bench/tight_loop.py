"""The tightest loops, SharedHashMap against dict, interleaved in one run (issue 13's goals):
`for k in keys: get(k)`, `m[k]`, `k in m` and `m[k] = v`, at 1,000 and 10,000 keys, str keys
(64-character str values) and int keys (int values). Each cell: the median of `--rounds`
interleaved rounds (dict, map, dict, map, ...), nanoseconds per operation, and the ratio of
the medians; `[lo-hi]` is the middle half (2nd to 3rd quartile) of the rounds' own ratios
(each map round over the dict round just before it), so a run that a phase of the machine
disturbed shows as a wide bracket.

`get` reads entries unchanged since the last pass, so a map's get returns the object it
kept (`value_cache.rs`), as a dict does. `new` is the first get after every entry was
rewritten (each pass follows an untimed pass of sets): the value is built from shared
memory and kept.

`--runs N` measures the whole table N times, `--pause` seconds apart, and then prints each
cell's ratio over the runs: median, min and max. This machine's phases last minutes, so a
goal is judged on runs spread over them (README, "Against `dict` in the tightest loop").

    python python/bench/tight_loop.py [--rounds 9] [--runs 1] [--pause 20] [--ops get,set]
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


def quartiles(xs):
    """The 2nd and 3rd quartiles of `xs` (nearest rank)."""
    xs = sorted(xs)
    return xs[(len(xs) - 1) // 4], xs[(3 * (len(xs) - 1) + 3) // 4]


OPS = ("get", "[]", "in", "set", "new")


def measure(rounds, ops=OPS):
    """One run: prints a row per cell; returns {(keys, type, op): ratio of the medians}."""
    print(f"{'keys':>6} {'type':>4} {'op':>4} {'dict ns':>8} {'map ns':>8} {'ratio':>6}  "
          f"(medians of {rounds} interleaved rounds; [middle half of the rounds' ratios])")
    ratios = {}
    for n in (1_000, 10_000):
        for kind in ("str", "int"):
            keys = [f"key-{i:08d}" for i in range(n)] if kind == "str" else list(range(n))
            value = "v" * 64 if kind == "str" else 12345
            d = {k: value for k in keys}
            name = f"tight-{os.getpid()}"
            m = SharedHashMap(name, capacity=2 * n, max_key_size=32, max_value_size=128)
            try:
                for k in keys:
                    m[k] = value
                ld, lm = loops(d), loops(m)
                repeat = max(1, 200_000 // n)
                for op in ops:
                    val = value if op in ("set", "new") else None
                    rd, rm = [], []
                    for _ in range(rounds):
                        rd.append(time_ns(ld[op], keys, val, repeat, op))
                        rm.append(time_ns(lm[op], keys, val, repeat, op))
                    a, b = statistics.median(rd), statistics.median(rm)
                    lo, hi = quartiles([y / x for x, y in zip(rd, rm)])
                    ratios[(n, kind, op)] = b / a
                    print(f"{n:>6} {kind:>4} {op:>4} {a:>8.1f} {b:>8.1f} {b / a:>5.2f}x"
                          f"  [{lo:.2f}-{hi:.2f}]", flush=True)
            finally:  # a loop that raises leaves no segment behind
                m.unlink()
                m.close()
    return ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds per cell")
    ap.add_argument("--runs", type=int, default=1, help="whole tables measured, then summarised")
    ap.add_argument("--pause", type=float, default=20.0, help="seconds between runs")
    ap.add_argument("--ops", default=",".join(OPS),
                    help="the loops to time, comma-separated (default: all of %(default)s)")
    args = ap.parse_args()
    ops = tuple(args.ops.split(","))
    if not ops or any(op not in OPS for op in ops):
        ap.error(f"--ops takes some of {','.join(OPS)}")
    if args.rounds < 1 or args.runs < 1 or args.pause < 0:
        ap.error("--rounds and --runs must be at least 1, --pause at least 0")
    runs = []
    for r in range(args.runs):
        if r:
            time.sleep(args.pause)
            print()
        runs.append(measure(args.rounds, ops))
    if args.runs > 1:
        print(f"\nratio to dict over {args.runs} runs, {args.pause:g} s apart: median [min, max]")
        for cell in runs[0]:
            xs = sorted(run[cell] for run in runs)
            n, kind, op = cell
            print(f"{n:>6} {kind:>4} {op:>4}  {statistics.median(xs):.2f}x"
                  f"  [{xs[0]:.2f}, {xs[-1]:.2f}]")


if __name__ == "__main__":
    main()
