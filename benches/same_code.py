#!/usr/bin/env python3
"""Whether two builds run the same machine code on their hot paths: the deterministic check
beside a timed A/B on machines whose phases differ by 2x (docs/architecture.md, rule 5).

For each function whose demangled name matches PATTERN, compares the old build's instructions
with the new build's, with addresses, RIP-relative offsets and symbol names left out (they move
when anything else in the binary moves). Generic functions have one body per instantiation
under one demangled name; their bodies are compared as sets. `--rename OLD=NEW` maps a module
path that a move renamed. Exits 1 if any matched function differs.

    python3 benches/same_code.py OLD_BIN NEW_BIN --pattern 'run_worker|Target>::get' \\
        --rename 'backends::striped::=backends::protocols::striped::'
"""
import argparse
import difflib
import re
import subprocess
import sys


def functions(binary, renames):
    out = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    bodies, cur = {}, None
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if head:
            name = head.group(1)
            for old, new in renames:
                name = name.replace(old, new)
            cur = []
            bodies.setdefault(name, []).append(cur)
        elif cur is not None and "\t" in line:
            ins = line.split("\t", 1)[1].split("<")[0].split("#")[0]
            ins = re.sub(r"-?0x[0-9a-f]+\(%rip\)", "RIP", ins)
            ins = re.sub(r"\b[0-9a-f]{5,}\b", "ADDR", ins)
            cur.append(ins.strip())
    return bodies


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--pattern", required=True, help="regex over demangled function names")
    ap.add_argument("--rename", action="append", default=[],
                    help="OLD=NEW: a path the change renamed, applied to both builds' names")
    args = ap.parse_args()
    renames = [tuple(r.split("=", 1)) for r in args.rename]
    old, new = functions(args.old, renames), functions(args.new, renames)
    pat = re.compile(args.pattern)
    same, differ, unmatched = 0, 0, []
    for name in sorted(n for n in new if pat.search(n)):
        if name not in old:
            unmatched.append(name)
            continue
        a, b = sorted(old[name]), sorted(new[name])
        if a == b:
            same += 1
            continue
        differ += 1
        lines = sum(1 for x, y in zip(a, b) for d in difflib.unified_diff(x, y, lineterm="", n=0)
                    if d[:1] in "+-" and d[:3] not in ("+++", "---"))
        print(f"differs ({lines} instruction lines): {name[:150]}")
    for name in unmatched:
        print(f"only in the new build (rename its path?): {name[:150]}")
    print(f"{same} functions identical, {differ} differ, {len(unmatched)} unmatched")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
