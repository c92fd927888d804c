#!/usr/bin/env python3
"""Two builds of the criterion bench side by side: each round runs the old bench binary and
the new one in turn (old first on even rounds, new first on odd ones), and prints, per
benchmark, the median of the paired new/old time ratios with their range. For "a move or a
refactor cost nothing": build the old commit's bench binary first, e.g.

    git worktree add /tmp/old HEAD~3
    (cd /tmp/old && cargo bench --no-run -p shmap-benches)   # prints the binary's path
    cargo bench --no-run -p shmap-benches
    python3 benches/ab_criterion.py OLD_BIN NEW_BIN --filter lockfree --rounds 5

A ratio above 1 means the new build is slower. Each run uses criterion's own estimate (the
middle of its `time: [low mid high]`), with `--noplot` and nothing saved as a baseline.
"""
import argparse
import re
import statistics
import subprocess

LINE = re.compile(r"^(\S+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", re.M)
UNIT = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def run(binary, args):
    out = subprocess.run([binary, "--bench", "--noplot", "--discard-baseline", *args],
                         capture_output=True, text=True, check=True).stdout
    # criterion prints a long name on a line of its own and the time on the next one
    out = re.sub(r"^(\S+)\n\s+time:", r"\1 time:", out, flags=re.M)
    return {name: float(v) * UNIT[u] for name, v, u in LINE.findall(out)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--filter", default="", help="criterion's benchmark name filter")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--measurement-time", default="3")
    args = ap.parse_args()
    crit = ["--warm-up-time", "1", "--measurement-time", args.measurement_time]
    if args.filter:
        crit.append(args.filter)
    times = {"old": [], "new": []}
    for r in range(args.rounds):
        for which in (["old", "new"] if r % 2 == 0 else ["new", "old"]):
            times[which].append(run(getattr(args, which), crit))
    names = sorted(set.intersection(*(set(t) for t in times["old"] + times["new"])))
    print(f"| benchmark | old ns | new ns | new/old, median of {args.rounds} pairs [min, max] |")
    print("|---|---:|---:|---|")
    for n in names:
        old = [t[n] for t in times["old"]]
        new = [t[n] for t in times["new"]]
        ratios = sorted(b / a for a, b in zip(old, new))
        print(f"| {n} | {statistics.median(old):.1f} | {statistics.median(new):.1f} | "
              f"{statistics.median(ratios):.3f} [{ratios[0]:.3f}, {ratios[-1]:.3f}] |")


if __name__ == "__main__":
    main()
