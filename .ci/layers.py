#!/usr/bin/env python3
"""The house's rules, checked (docs/architecture.md): no import circle between the top-level
modules of `backends/src` and `harness/src`, every backends module imports only from the
layers below its own, and no source file is much over 600 lines.

An import is any `crate::NAME` path or `use crate::{NAME, ...}` in a file of module NAME2
(a folder `NAME/` is one module); `super::` inside a folder stays inside its module. Run by
`make lint`; exits 1 with what broke.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# backends/src, bottom first: a module may import only from modules of a lower rank.
BACKENDS_LAYERS = [
    ["journal"],
    ["slot"],
    ["generations"],
    ["protocol"],
    ["recovery"],
    ["protocols"],
    ["table"],
    ["lifecycle"],
    ["lib"],
]
STANDALONE = {"redis_map"}  # imports nothing else of the crate
MAX_LINES = 620  # "about 600"


def module_of(src: pathlib.Path, f: pathlib.Path) -> str:
    rel = f.relative_to(src)
    return rel.parts[0].removesuffix(".rs") if len(rel.parts) > 1 or rel.stem != "main" else "main"


def imports(text: str) -> set:
    found = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
    for group in re.findall(r"\buse crate::\{([^}]*)\}", text, re.S):
        found |= {p.strip().split("::")[0] for p in group.split(",") if p.strip()}
    return found


def graph(src: pathlib.Path) -> dict:
    mods = {}
    for f in sorted(src.rglob("*.rs")):
        m = module_of(src, f)
        text = re.sub(r"//[^\n]*", "", f.read_text())  # comments and docs name modules freely
        mods.setdefault(m, set()).update(imports(text))
    names = set(mods)
    return {m: {d for d in deps if d in names and d != m} for m, deps in mods.items()}


def cycles(g: dict) -> list:
    out, state = [], {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(g[m]):
            if state.get(d) == 1:
                out.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    return out


def main() -> int:
    errors = []
    for crate in ["backends", "harness"]:
        g = graph(ROOT / crate / "src")
        for c in cycles(g):
            errors.append(f"{crate}: import circle {' -> '.join(c)}")
    g = graph(ROOT / "backends" / "src")
    rank = {m: i for i, layer in enumerate(BACKENDS_LAYERS) for m in layer}
    for m, deps in sorted(g.items()):
        if m in STANDALONE:
            if deps:
                errors.append(f"backends: {m} stands alone but imports {sorted(deps)}")
            continue
        if m not in rank:
            errors.append(f"backends: module {m} has no layer in .ci/layers.py")
            continue
        for d in sorted(deps):
            if d in STANDALONE and m == "lib":
                continue
            if rank.get(d, len(rank)) >= rank[m]:
                errors.append(f"backends: {m} imports {d}, which is not below it")
    for f in sorted(ROOT.glob("*/src/**/*.rs")) + sorted(ROOT.glob("src/**/*.rs")):
        if "target" in f.parts:
            continue
        n = len(f.read_text().splitlines())
        if n > MAX_LINES:
            errors.append(f"{f.relative_to(ROOT)}: {n} lines (about 600 at most)")
    for e in errors:
        print(e)
    if not errors:
        print("layers: no import circle, every backends import runs down, no file over about 600 lines")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
