"""The same get / set / mixed workloads on SharedHashMap and on what a Python user would pick
instead: the original pure-Python SharedHashMap (shared-hashmap 0.2.0 from the package index),
multiprocessing.Manager().dict(), UltraDict, shared-memory-dict, lmdb, and a plain dict as the
single-process ceiling; and, for processes on several machines, the same map on a Redis server
(`url=`) beside hand-written redis-py (HGET/HSET on one hash), both over TCP loopback to one
private redis-server started here (skipped, saying so, without one). Writes a Markdown table
and a CSV.

    make compare        # installs everything, the original into .venv-original, and runs this

The original has our import name (`shared_hashmap`), so it cannot live in our virtualenv: it is
measured by a second interpreter (`--original-python`) running this same file for one cell.

Gets use each store's `.get`. Each cell is total operations per second over every process, for
a fixed time window; every cell runs `--repeats` times, the stores interleaved (A B C A B C ...)
so that a machine that changes speed moves all of them alike; the table gives the median with
the slowest and fastest repeat. Keys are 1,000 strings chosen at random, values 64-character
strings; every store is pre-filled so gets hit. Both SharedHashMaps are sized for the data
(2,048 buckets, 32-byte keys, 128-byte values).
"""

import argparse
import csv
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time

KEYS = [f"key-{i:06d}" for i in range(1000)]
VALUE = "v" * 64


# --- one adapter per store: setup in the parent, open in each worker, teardown -------------

class Peer:
    name = ""
    shared = True  # usable from several processes

    def setup(self):
        """Creates the store and pre-fills it; returns what workers need to open it."""
        raise NotImplementedError

    def open(self, ctx):
        """Returns (get, set) callables in this process."""
        raise NotImplementedError

    def teardown(self, ctx):
        pass


class SharedHashMapPeer(Peer):
    name = "SharedHashMap (this project)"

    def setup(self):
        from shared_hashmap import SharedHashMap

        # Sized for the data, as a user would: 2x the keys, room for the 64-char values.
        self.m = SharedHashMap(f"cmp-{os.getpid()}", capacity=2048, max_key_size=32, max_value_size=128)
        for k in KEYS:
            self.m[k] = VALUE
        return self.m.name

    def open(self, name):
        from shared_hashmap import SharedHashMap

        m = SharedHashMap(name, create=False)
        return m.get, m.__setitem__

    def teardown(self, name):
        self.m.unlink()
        self.m.close()


class OriginalPeer(SharedHashMapPeer):
    """The original package, measured by the interpreter of its own virtualenv."""

    name = "SharedHashMap 0.2.0 (the original, pure Python)"
    python = None  # set from --original-python

    @classmethod
    def measure_external(cls, workload, procs, seconds):
        if cls.python is None:
            raise RuntimeError("not installed: run `make compare`, or pass --original-python")
        out = subprocess.run(
            [cls.python, __file__, "--cell", "SharedHashMapPeer", workload, str(procs), str(seconds)],
            capture_output=True, text=True, timeout=600, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
        return json.loads(out.stdout.strip().splitlines()[-1])


class DictPeer(Peer):
    name = "dict (one process, ceiling)"
    shared = False

    def setup(self):
        self.d = {k: VALUE for k in KEYS}
        return None

    def open(self, _):
        return self.d.get, self.d.__setitem__


class ManagerPeer(Peer):
    name = "multiprocessing.Manager().dict()"

    def setup(self):
        self.manager = mp.Manager()
        self.d = self.manager.dict({k: VALUE for k in KEYS})
        return self.d

    def open(self, proxy):
        return proxy.get, proxy.__setitem__

    def teardown(self, _):
        self.manager.shutdown()


class UltraDictPeer(Peer):
    name = "UltraDict (shared_lock=True)"

    def setup(self):
        from UltraDict import UltraDict

        self.d = UltraDict({k: VALUE for k in KEYS}, name=f"ud{os.getpid()}", buffer_size=4 << 20, shared_lock=True)
        return self.d.name

    def open(self, name):
        from UltraDict import UltraDict

        d = UltraDict(name=name, shared_lock=True)
        return d.get, d.__setitem__

    def teardown(self, _):
        self.d.unlink()


class SharedMemoryDictPeer(Peer):
    name = "shared-memory-dict"

    def setup(self):
        from shared_memory_dict import SharedMemoryDict

        self.name = f"smd{os.getpid()}"  # the library derives its segment name from this
        self.d = SharedMemoryDict(name=self.name, size=4 << 20)
        for k in KEYS:
            self.d[k] = VALUE
        return self.name

    def open(self, name):
        from shared_memory_dict import SharedMemoryDict

        d = SharedMemoryDict(name=name, size=4 << 20)
        return d.get, d.__setitem__

    def teardown(self, _):
        self.d.shm.close()
        self.d.shm.unlink()


class LmdbPeer(Peer):
    name = "lmdb (one transaction per operation)"

    def setup(self):
        import lmdb

        self.dir = tempfile.mkdtemp(prefix="cmp-lmdb-", dir="/dev/shm")
        env = lmdb.open(self.dir, map_size=256 << 20)
        with env.begin(write=True) as txn:
            for k in KEYS:
                txn.put(k.encode(), VALUE.encode())
        env.close()
        return self.dir

    def open(self, path):
        import lmdb

        env = lmdb.open(path, map_size=256 << 20)

        def get(k):
            with env.begin() as txn:
                return txn.get(k.encode()).decode()

        def put(k, v):
            with env.begin(write=True) as txn:
                txn.put(k.encode(), v.encode())

        return get, put

    def teardown(self, _):
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """One private redis-server on a free loopback port, persistence off, for the Redis rows."""

    url = None
    proc = None

    @classmethod
    def start(cls):
        import socket

        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cls.dir = tempfile.mkdtemp(prefix="cmp-redis-")
        cls.proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", cls.dir],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(8).startswith(b"+PONG"):
                        cls.url = f"redis://127.0.0.1:{port}/0"
                        return
            except OSError:
                time.sleep(0.05)

    @classmethod
    def stop(cls):
        if cls.proc:
            cls.proc.kill()
            cls.proc.wait()
            shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def need(cls):
        if cls.url is None:
            raise RuntimeError("no redis-server installed (apt-get install redis-server)")
        return cls.url


class SharedHashMapRedisPeer(Peer):
    name = "SharedHashMap(url=) on Redis (this project)"

    def setup(self):
        from shared_hashmap import SharedHashMap

        self.m = SharedHashMap(f"cmp-{os.getpid()}", capacity=2048, max_key_size=32, max_value_size=128,
                               url=RedisServer.need())
        self.m.update({k: VALUE for k in KEYS})
        return (self.m.name, RedisServer.url)

    def open(self, ctx):
        from shared_hashmap import SharedHashMap

        name, url = ctx
        m = SharedHashMap(name, create=False, url=url)
        return m.get, m.__setitem__

    def teardown(self, ctx):
        self.m.unlink()
        self.m.close()


class RedisPyPeer(Peer):
    name = "redis-py by hand (HGET/HSET on one hash)"

    def setup(self):
        import redis

        self.name_ = f"cmp-redispy-{os.getpid()}"
        self.r = redis.Redis.from_url(RedisServer.need())
        self.r.hset(self.name_, mapping={k: VALUE for k in KEYS})
        return (self.name_, RedisServer.url)

    def open(self, ctx):
        import redis

        name, url = ctx
        r = redis.Redis.from_url(url, decode_responses=True)
        return (lambda k: r.hget(name, k)), (lambda k, v: r.hset(name, k, v))

    def teardown(self, ctx):
        self.r.delete(self.name_)


PEERS = [SharedHashMapPeer, OriginalPeer, DictPeer, ManagerPeer, UltraDictPeer, SharedMemoryDictPeer, LmdbPeer,
         SharedHashMapRedisPeer, RedisPyPeer]


# --- the workloads ----------------------------------------------------------------------------

def run_ops(peer, ctx, workload, seconds, seed):
    get, put = peer.open(ctx)
    rng = random.Random(seed)
    keys = [rng.choice(KEYS) for _ in range(4096)]
    sets = {"get": [False] * 4096, "set": [True] * 4096, "mixed": [rng.random() < 0.1 for _ in range(4096)]}[workload]
    ops, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while True:
        for k, is_set in zip(keys, sets):
            if is_set:
                put(k, VALUE)
            else:
                get(k)
        ops += len(keys)
        if time.perf_counter() >= deadline:
            return ops / (time.perf_counter() - start)


def _child(peer_cls_index, ctx, workload, seconds, seed, barrier, out):
    peer = PEERS[peer_cls_index]()
    barrier.wait()
    out.put(run_ops(peer, ctx, workload, seconds, seed))


def measure(peer_cls, workload, procs, seconds):
    if hasattr(peer_cls, "measure_external"):
        return peer_cls.measure_external(workload, procs, seconds)
    peer = peer_cls()
    ctx = peer.setup()
    try:
        if procs == 1:
            return run_ops(peer, ctx, workload, seconds, 1)
        mpctx = mp.get_context("fork")
        barrier, out = mpctx.Barrier(procs), mpctx.Queue()
        index = PEERS.index(peer_cls)
        children = [mpctx.Process(target=_child, args=(index, ctx, workload, seconds, s, barrier, out)) for s in range(procs)]
        for c in children:
            c.start()
        rates = [out.get(timeout=120) for _ in children]
        for c in children:
            c.join()
        return sum(rates)
    finally:
        peer.teardown(ctx)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/python")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--procs", default="1,4")
    ap.add_argument("--repeats", type=int, default=3, help="runs of every cell, stores interleaved")
    ap.add_argument("--original-python", help="interpreter of a virtualenv with shared-hashmap==0.2.0")
    ap.add_argument("--cell", nargs=4, metavar=("PEER", "WORKLOAD", "PROCS", "SECONDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cell:  # one cell for a parent compare.py running under another interpreter
        peer, workload, procs, seconds = args.cell
        print(json.dumps(measure(globals()[peer], workload, int(procs), float(seconds))))
        return
    OriginalPeer.python = args.original_python
    RedisServer.start()
    try:
        report(args)
    finally:
        RedisServer.stop()


def report(args):
    procs_list = [int(p) for p in args.procs.split(",")]
    machine = f"{cpu_model()}, {os.cpu_count()} cpus, Linux {platform.release()}, Python {platform.python_version()}"
    cells = [(p, w) for p in procs_list for w in ("get", "set", "mixed")]
    rates = {}  # (store, procs, workload) -> [ops/s per repeat]
    failures = {}
    for repeat in range(args.repeats):
        for procs, workload in cells:
            for peer_cls in PEERS:  # interleaved: every store once per repeat of this cell
                key = (peer_cls.name, procs, workload)
                if (procs > 1 and not peer_cls.shared) or key in failures:
                    continue
                try:
                    rate = measure(peer_cls, workload, procs, args.seconds)
                    rates.setdefault(key, []).append(rate)
                except Exception as e:  # a peer that cannot run says so in its row
                    failures[key] = f"failed: {type(e).__name__}: {e}"
                    rate = 0.0
                print(f"#{repeat} {peer_cls.name:<48} {procs} procs {workload:<5} {rate:>12,.0f} ops/s {failures.get(key, '')}", flush=True)
    rows = []
    for peer_cls in PEERS:
        for procs, workload in cells:
            key = (peer_cls.name, procs, workload)
            xs = rates.get(key, [])
            if key not in failures and not xs:
                continue
            rows.append({
                "store": peer_cls.name, "procs": procs, "workload": workload,
                "median_ops_per_sec": round(statistics.median(xs)) if xs else 0,
                "min_ops_per_sec": round(min(xs)) if xs else 0,
                "max_ops_per_sec": round(max(xs)) if xs else 0,
                "repeats": len(xs),
                "ops_per_sec": json.dumps([round(x) for x in xs]),
                "status": "ok" if key not in failures else "failed",
                "message": failures.get(key, ""),
                "machine": machine,
            })
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "comparison.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    by = {(r["store"], r["procs"], r["workload"]): r for r in rows}

    def cell(r):
        if r is None:
            return "-"
        if r["status"] != "ok":
            return "failed"
        return f"{r['median_ops_per_sec']:,}<br>({r['min_ops_per_sec']:,}-{r['max_ops_per_sec']:,})"

    lines = [f"Machine: {machine}; {args.seconds} s per cell, {args.repeats} repeats interleaved across stores; "
             "median (slowest-fastest); 1,000 str keys, 64-char str values.", "",
             "| store | " + " | ".join(f"{w} x{p}" for p, w in cells) + " |",
             "|---|" + "---|" * len(cells)]
    for peer_cls in PEERS:
        lines.append(f"| {peer_cls.name} | " + " | ".join(cell(by.get((peer_cls.name, p, w))) for p, w in cells) + " |")
    ours = by.get((SharedHashMapPeer.name, 1, "get"))
    ceiling = by.get((DictPeer.name, 1, "get"))
    original = by.get((OriginalPeer.name, 1, "get"))
    if ours and ceiling:
        lines += ["", f"A SharedHashMap get costs {ceiling['median_ops_per_sec'] / max(ours['median_ops_per_sec'], 1):.2f}x a dict get in the same loop."]
    for procs in procs_list:
        for w in ("get", "set", "mixed"):
            a, b = by.get((SharedHashMapRedisPeer.name, procs, w)), by.get((RedisPyPeer.name, procs, w))
            if a and b and a["status"] == b["status"] == "ok" and b["median_ops_per_sec"]:
                lines.append(f"- Redis, {w} x{procs}: url= does {a['median_ops_per_sec'] / b['median_ops_per_sec']:.2f}x "
                             "the ops/s of redis-py by hand, same server, same run.")
    if ours and original and original["status"] == "ok":
        for w in ("get", "set", "mixed"):
            o, n = by[(OriginalPeer.name, 1, w)], by[(SharedHashMapPeer.name, 1, w)]
            if o["status"] == "ok" and o["median_ops_per_sec"]:
                lines.append(f"- {w}, one process: {n['median_ops_per_sec'] / o['median_ops_per_sec']:.0f}x the original's ops/s, measured side by side.")
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "Cells that failed:", ""] + [f"- {r['store']} {r['workload']} x{r['procs']}: {r['message']}" for r in failed]
    with open(os.path.join(args.out, "comparison.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
