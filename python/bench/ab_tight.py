"""Builds of the extension side by side: `tight_loop.py --rounds 3` run in turn in two or more
virtualenvs (A B C, then B C A, ...), each cell's median over the runs, each build's time
over the first's (A), and each build's ratio to `dict` with its range over the runs (measured
in the same process, so robust to the machine's phases). For "before and after a commit":
install the old commit's tree into its own venv, e.g.

    git worktree add /tmp/old 8735374
    python3 -m venv /tmp/venv-old && /tmp/venv-old/bin/pip install /tmp/old
    python3 -m venv /tmp/venv-new && /tmp/venv-new/bin/pip install .
    python3 python/bench/ab_tight.py /tmp/venv-old /tmp/venv-new --runs 8

A build with a patch applied (e.g. an experiment in `results/`) is made the same way, from a
tree with the patch applied.
"""
import argparse
import collections
import os
import statistics
import subprocess

TIGHT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tight_loop.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("venvs", nargs="+", help="virtualenvs of the builds, the reference (A) first")
    ap.add_argument("--runs", type=int, default=8, help="runs per build, in turn")
    ap.add_argument("--ops", help="passed on to tight_loop.py (default: every loop)")
    args = ap.parse_args()
    venvs = args.venvs
    if len(venvs) < 2 or len(set(venvs)) != len(venvs) or args.runs < 1:
        ap.error("give at least two different virtualenvs and --runs of at least 1")
    ns = {v: collections.defaultdict(list) for v in venvs}
    ratio = {v: collections.defaultdict(list) for v in venvs}
    cells = []
    for r in range(args.runs):
        # Each build starts a run in turn, so none always follows the same neighbour.
        k = r % len(venvs)
        for venv in venvs[k:] + venvs[:k]:
            cmd = [os.path.join(venv, "bin", "python"), TIGHT, "--rounds", "3"]
            out = subprocess.run(cmd + (["--ops", args.ops] if args.ops else []),
                                 capture_output=True, text=True, check=True).stdout
            for line in out.splitlines()[1:]:
                f = line.split()
                cell = " ".join(f[:3])
                if cell not in cells:
                    cells.append(cell)
                ns[venv][cell].append(float(f[4]))
                ratio[venv][cell].append(float(f[5].rstrip("x")))
    names = [chr(ord("A") + i) for i in range(len(venvs))]
    for name, venv in zip(names, venvs):
        print(f"{name}: {venv}")
    print(f"medians of {args.runs} runs per build, in turn; ns per operation; "
          "ratio to dict: median [min, max]")
    print("| keys type op | " + " | ".join(f"{n} ns" for n in names) + " | "
          + " | ".join(f"{n}/A" for n in names[1:]) + " | "
          + " | ".join(f"{n} / dict" for n in names) + " |")
    print("|---|" + "---:|" * (3 * len(venvs) - 1))
    for cell in cells:
        t = [statistics.median(ns[v][cell]) for v in venvs]
        d = [sorted(ratio[v][cell]) for v in venvs]
        print(f"| {cell} | " + " | ".join(f"{x:.1f}" for x in t) + " | "
              + " | ".join(f"{x / t[0]:.2f}" for x in t[1:]) + " | "
              + " | ".join(f"{statistics.median(x):.2f}x [{x[0]:.2f}, {x[-1]:.2f}]" for x in d)
              + " |")


if __name__ == "__main__":
    main()
