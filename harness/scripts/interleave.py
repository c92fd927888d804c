#!/usr/bin/env python3
"""Cells of one harness build side by side: `harness run` of each cell in turn (forward on
even rounds, backward on odd ones), the median M ops/s of each with its spread, for ratios
between cells measured in the same run (e.g. read-heavy against read, lockfree against
dashmap):

    python3 harness/scripts/interleave.py target/release/harness --rounds 5 \\
        --cell lockfree,read,1 --cell lockfree,read-heavy,1 \\
        --cell lockfree,read-heavy,2 --cell dashmap,read-heavy,2
"""
import argparse
import json
import statistics
import subprocess


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("harness")
    ap.add_argument("--cell", action="append", required=True,
                    help="backend,workload,procs (repeatable)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cells = [(b, w, int(p)) for b, w, p in (c.split(",") for c in args.cell)]
    res = {c: [] for c in cells}
    for r in range(args.rounds):
        for b, w, p in cells if r % 2 == 0 else cells[::-1]:
            out = subprocess.run(
                [args.harness, "run", "--backend", b, "--workload", w, "--procs", str(p),
                 "--duration", "1", "--warmup", "0.3", "--json"],
                capture_output=True, text=True, check=True).stdout
            res[(b, w, p)].append(json.loads(out)["summary"]["median_ops_per_sec"] / 1e6)
    print(f"| backend | workload | procs | M ops/s, median of {args.rounds} [min, max] |")
    print("|---|---|---:|---|")
    for (b, w, p), v in res.items():
        print(f"| {b} | {w} | {p} | {statistics.median(v):.2f} [{min(v):.2f}, {max(v):.2f}] |")


if __name__ == "__main__":
    main()
