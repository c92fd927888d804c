#!/usr/bin/env python3
"""What a file-backed map costs against /dev/shm: `harness run` of each cell with
--storage shm and --storage file:DIR in interleaved pairs (A B, then B A), the median of the
paired ratios with their range. Pairs, because this machine's phases move both members of a
pair alike; a sweep per storage cannot separate the storage from the phase.

    python3 harness/scripts/storage_pairs.py [--rounds 7] [--dir /var/tmp/shmap-files]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HARNESS = os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "harness")

# (backend, workload, procs, extra harness flags)
CELLS = [
    (b, w, p, [])
    for b in ["lockfree", "spinlock", "mutex"]
    for (w, p) in [("write", 1), ("read", 1), ("exchange", 2)]
] + [("lockfree", "write", 1, ["--value-size", "1024", "--keys", "2000"])]


def run(cell, storage):
    backend, workload, procs, extra = cell
    out = subprocess.run(
        [HARNESS, "run", "--backend", backend, "--workload", workload, "--procs", str(procs),
         "--duration", "1", "--warmup", "0.3", "--storage", storage, "--json", *extra],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out)["summary"]["median_ops_per_sec"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", default="/var/tmp/shmap-files")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    file = f"file:{args.dir}"
    res = {i: {"shm": [], "file": []} for i in range(len(CELLS))}
    for r in range(args.rounds):
        for i, cell in enumerate(CELLS):
            for storage in (["shm", file] if r % 2 == 0 else [file, "shm"]):
                res[i]["shm" if storage == "shm" else "file"].append(run(cell, storage))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"| backend | workload | procs | shm M ops/s | file M ops/s | file/shm, median of "
          f"{args.rounds} pairs [min, max] |")
    print("|---|---|---:|---:|---:|---|")
    for i, (backend, workload, procs, extra) in enumerate(CELLS):
        s, f = res[i]["shm"], res[i]["file"]
        ratios = sorted(x / y for x, y in zip(f, s))
        what = workload + (" " + " ".join(extra) if extra else "")
        print(f"| {backend} | {what} | {procs} | {statistics.median(s) / 1e6:.2f} | "
              f"{statistics.median(f) / 1e6:.2f} | {statistics.median(ratios):.2f} "
              f"[{ratios[0]:.2f}, {ratios[-1]:.2f}] |")


if __name__ == "__main__":
    main()
