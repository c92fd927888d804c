#!/usr/bin/env python3
"""Two builds of the harness side by side: `harness run` of each cell with the old binary and
the new one in interleaved pairs (A B, then B A), the median of the paired new/old ratios with
their range. For "before and after a commit": build the old commit in a git worktree with its
own target directory, e.g.

    git worktree add /tmp/old 983f176
    (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p shmap-harness)
    python3 harness/scripts/ab_builds.py /tmp/old-target/release/harness \\
        target/release/harness --cell lockfree,write,1 --cell lockfree,write,2

Harnesses older than the JSON schema print `ops_per_sec` at the top level; both are read.
"""
import argparse
import json
import statistics
import subprocess


def run(harness, backend, workload, procs, extra=()):
    out = subprocess.run(
        [harness, "run", "--backend", backend, "--workload", workload, "--procs", str(procs),
         "--duration", "1", "--warmup", "0.3", "--json", *extra],
        capture_output=True, text=True, check=True).stdout
    j = json.loads(out)
    return j["summary"]["median_ops_per_sec"] if "summary" in j else j["ops_per_sec"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--cell", action="append", required=True,
                    help="backend,workload,procs (repeatable)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--extra", default="",
                    help="more harness run flags for every run, e.g. '--capacity 20000'")
    args = ap.parse_args()
    cells = [(b, w, int(p)) for b, w, p in (c.split(",") for c in args.cell)]
    res = {c: {"old": [], "new": []} for c in cells}
    for r in range(args.rounds):
        for c in cells:
            for which in (["old", "new"] if r % 2 == 0 else ["new", "old"]):
                res[c][which].append(run(getattr(args, which), *c, args.extra.split()))
    print(f"| backend | workload | procs | old M ops/s | new M ops/s | new/old, median of "
          f"{args.rounds} pairs [min, max] |")
    print("|---|---|---:|---:|---:|---|")
    for c in cells:
        old, new = res[c]["old"], res[c]["new"]
        ratios = sorted(n / o for o, n in zip(old, new))
        print(f"| {c[0]} | {c[1]} | {c[2]} | {statistics.median(old) / 1e6:.2f} | "
              f"{statistics.median(new) / 1e6:.2f} | {statistics.median(ratios):.2f} "
              f"[{ratios[0]:.2f}, {ratios[-1]:.2f}] |")


if __name__ == "__main__":
    main()
