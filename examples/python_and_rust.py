"""Python and Rust on one map: Python workers put orders in as dicts, a Rust program
(typed/examples/python_and_rust.rs, on the `shmap-typed` crate) prices them, and both count
in the same counter with `incr`. Needs cargo (it builds the Rust half):

    pip install .
    python examples/python_and_rust.py
"""

import os
import subprocess
from pathlib import Path

from shared_hashmap import SharedHashMap

ROOT = Path(__file__).resolve().parents[1]
ORDERS = [
    {"item": "tea", "qty": 3, "unit_price": 2.5},
    {"item": "scone", "qty": 2, "unit_price": 3.25},
    {"item": "jam", "qty": 1, "unit_price": 4.0},
]


def main():
    # serializer="json": the dicts are stored as JSON, which Rust reads with serde (pickle,
    # the default, is for Python only).
    with SharedHashMap(f"orders-{os.getpid()}", serializer="json") as m:
        for i, order in enumerate(ORDERS):
            m[("order", i)] = order  # a tuple key: Rust's (String, u32)
        m["orders"] = len(ORDERS)
        m.incr("priced", 0)  # the counter both languages add to
        subprocess.run(
            ["cargo", "run", "--release", "-q", "-p", "shmap-typed",
             "--example", "python_and_rust", "--", m.name],
            cwd=ROOT, check=True,
        )
        for i, order in enumerate(ORDERS):
            print(f"python: {order['item']}: {m[('total', i)]:.2f}")
        assert m["priced"] == len(ORDERS)
        assert m[("total", 0)] == 7.5 and type(m[("total", 0)]) is float
        m.unlink()


if __name__ == "__main__":
    main()
