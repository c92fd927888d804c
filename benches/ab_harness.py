"""Two harness builds alternated (A B, then B A, ...): ops/s per cell, the ratio B/A with the
range over the pairs, and the bytes per entry each build's map takes (the pages of its files).
For "before and after a commit": build the old commit's harness in its own worktree and
target directory, then

    python3 benches/ab_harness.py OLD/harness NEW/harness [ROUNDS]

`CELLS=lockfree:write:10000,null:read:10000` limits it to some cells; the `null` cell is the
harness's own floor, whose ratio shows the machine's drift during the run (it runs the same
code in both builds)."""
import json, statistics, subprocess, sys
A, B = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
import os
ALL = [("lockfree", "read", 10000), ("lockfree", "read-heavy", 10000), ("lockfree", "write", 10000),
         ("lockfree", "exchange", 10000), ("lockfree", "read", 100000), ("spinlock", "read-heavy", 10000),
         ("mutex", "read-heavy", 10000), ("null", "read", 10000)]
# Only when CELLS names them: a private redis-server per run (about a second to start).
EXTRA = [("redis", "write", 10000), ("redis", "exchange", 10000), ("redis", "read-heavy", 10000)]
only = os.environ.get("CELLS")
cells = [c for c in ALL + EXTRA
         if (not only and c in ALL) or (only and f"{c[0]}:{c[1]}:{c[2]}" in only.split(","))]
res = {}
for r in range(rounds):
    for cell in cells:
        order = [A, B] if r % 2 == 0 else [B, A]
        for binary in order:
            backend, wl, keys = cell
            out = subprocess.run([binary, "run", "--backend", backend, "--workload", wl, "--procs", "2",
                                  "--keys", str(keys), "--duration", "1", "--json"],
                                 capture_output=True, text=True)
            run = json.loads(out.stdout)["runs"][0]
            res.setdefault((cell, binary), []).append((run["ops_per_sec"], run.get("bytes_per_entry")))
print("| backend | workload | keys | A Mops/s | B Mops/s | B/A median [min, max of pairs] | A B/entry | B B/entry |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for cell in cells:
    a = res[(cell, A)]; b = res[(cell, B)]
    ratios = [y[0] / x[0] for x, y in zip(a, b)]
    med = lambda xs: statistics.median(xs)
    bpe = lambda xs: "-" if xs[0][1] is None else f"{med([x[1] for x in xs]):.0f}"
    print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {med([x[0] for x in a])/1e6:.2f} | {med([x[0] for x in b])/1e6:.2f} | "
          f"{med(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] | {bpe(a)} | {bpe(b)} |")
