"""Two builds of the extension side by side: `tight_loop.py --rounds 3` run alternately in two
virtualenvs (A B, then B A, ...), each cell's median over the runs, the ratio B/A, and each
build's ratio to `dict` (measured in the same process, so it is robust to the machine's
phases). For "before and after a commit": install the old commit's tree into its own venv,
e.g.

    git worktree add /tmp/old 8735374
    python3 -m venv /tmp/venv-old && /tmp/venv-old/bin/pip install /tmp/old
    python3 -m venv /tmp/venv-new && /tmp/venv-new/bin/pip install .
    python3 python/bench/ab_tight.py /tmp/venv-old /tmp/venv-new --runs 8
"""
import argparse
import collections
import os
import statistics
import subprocess

TIGHT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tight_loop.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="virtualenv of build A (the old one)")
    ap.add_argument("b", help="virtualenv of build B (the new one)")
    ap.add_argument("--runs", type=int, default=8, help="runs per build, alternated")
    args = ap.parse_args()
    ns = {v: collections.defaultdict(list) for v in (args.a, args.b)}
    ratio = {v: collections.defaultdict(list) for v in (args.a, args.b)}
    cells = []
    for r in range(args.runs):
        for venv in (args.a, args.b) if r % 2 == 0 else (args.b, args.a):
            out = subprocess.run([os.path.join(venv, "bin", "python"), TIGHT, "--rounds", "3"],
                                 capture_output=True, text=True, check=True).stdout
            for line in out.splitlines()[1:]:
                f = line.split()
                cell = " ".join(f[:3])
                if cell not in cells:
                    cells.append(cell)
                ns[venv][cell].append(float(f[4]))
                ratio[venv][cell].append(float(f[5].rstrip("x")))
    print(f"medians of {args.runs} runs per build, alternated; ns per operation")
    print("| keys type op | A ns | B ns | B/A | A / dict | B / dict |")
    print("|---|---:|---:|---:|---:|---:|")
    for cell in cells:
        a, b = statistics.median(ns[args.a][cell]), statistics.median(ns[args.b][cell])
        ra, rb = statistics.median(ratio[args.a][cell]), statistics.median(ratio[args.b][cell])
        print(f"| {cell} | {a:.1f} | {b:.1f} | {b / a:.2f} | {ra:.2f}x | {rb:.2f}x |")


if __name__ == "__main__":
    main()
