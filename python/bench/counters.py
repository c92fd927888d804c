"""Shared counters: N processes incrementing counters for a fixed time, on SharedHashMap's
atomic incr and on what a Python user would use instead, with the final total checked.

    make compare        # runs this after compare.py

Rows: SharedHashMap.incr; UltraDict under its shared lock; a Manager dict under a Manager
Lock; lmdb (get and put in one write transaction); Redis INCR (over a Unix socket to a private
redis-server started here, if the binary is installed; the row says so otherwise) and
SharedHashMap(url=).incr on the same kind of server and socket. Each cell:
total increments per second over all processes, 1 counter or 1,000 counters (chosen at
random), 1, 2 and 4 processes, `--repeats` runs with the stores interleaved, median with the
slowest and fastest. A cell is "exact" when the counters' final sum equals the increments the
processes counted: every one of these peers is correct here, since each uses a lock or
an atomic command; a plain `m[k] = m.get(k, 0) + 1` on any of them would not be.
"""

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time


class Counters:
    name = ""

    def setup(self, keys):
        """Creates the store with `keys` counters at 0; returns what workers need."""
        raise NotImplementedError

    def incr_fn(self, ctx):
        """In a worker: a function that adds 1 to counter `k` atomically."""
        raise NotImplementedError

    def total(self, ctx, keys):
        raise NotImplementedError

    def teardown(self, ctx):
        pass


class Ours(Counters):
    name = "SharedHashMap.incr (this project)"

    def setup(self, keys):
        from shared_hashmap import SharedHashMap

        self.m = SharedHashMap(f"ctr-{os.getpid()}", capacity=2 * keys + 16, max_key_size=16, max_value_size=16)
        for k in range(keys):
            self.m[k] = 0
        return self.m.name

    def incr_fn(self, name):
        from shared_hashmap import SharedHashMap

        m = SharedHashMap(name, create=False)
        return m.incr

    def total(self, name, keys):
        return sum(self.m[k] for k in range(keys))

    def teardown(self, name):
        self.m.unlink()


class UltraDictCounters(Counters):
    name = "UltraDict (with d.lock: d[k] += 1)"

    def setup(self, keys):
        from UltraDict import UltraDict

        self.d = UltraDict({k: 0 for k in range(keys)}, name=f"ctr{os.getpid()}", buffer_size=8 << 20,
                           shared_lock=True)
        return self.d.name

    def incr_fn(self, name):
        from UltraDict import UltraDict

        d = UltraDict(name=name, shared_lock=True)

        def incr(k):
            with d.lock:
                d[k] = d[k] + 1
        return incr

    def total(self, name, keys):
        return sum(self.d[k] for k in range(keys))

    def teardown(self, name):
        self.d.unlink()


class ManagerCounters(Counters):
    name = "Manager().dict() under a Manager Lock"

    def setup(self, keys):
        self.manager = mp.Manager()
        return self.manager.dict({k: 0 for k in range(keys)}), self.manager.Lock()

    def incr_fn(self, ctx):
        d, lock = ctx

        def incr(k):
            with lock:
                d[k] = d[k] + 1
        return incr

    def total(self, ctx, keys):
        return sum(ctx[0][k] for k in range(keys))

    def teardown(self, ctx):
        self.manager.shutdown()


class LmdbCounters(Counters):
    name = "lmdb (get and put in one write transaction)"

    def setup(self, keys):
        import lmdb

        self.dir = tempfile.mkdtemp(prefix="ctr-lmdb-", dir="/dev/shm")
        env = lmdb.open(self.dir, map_size=64 << 20)
        with env.begin(write=True) as txn:
            for k in range(keys):
                txn.put(str(k).encode(), b"0")
        env.close()
        return self.dir

    def incr_fn(self, path):
        import lmdb

        env = lmdb.open(path, map_size=64 << 20)

        def incr(k):
            key = str(k).encode()
            with env.begin(write=True) as txn:
                txn.put(key, str(int(txn.get(key)) + 1).encode())
        return incr

    def total(self, path, keys):
        import lmdb

        env = lmdb.open(path, map_size=64 << 20)
        with env.begin() as txn:
            return sum(int(txn.get(str(k).encode())) for k in range(keys))

    def teardown(self, path):
        shutil.rmtree(path, ignore_errors=True)


class RedisCounters(Counters):
    name = "Redis INCR (redis-py, private redis-server, Unix socket)"

    def setup(self, keys):
        import redis

        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="ctr-redis-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.proc = subprocess.Popen([server, "--port", "0", "--unixsocket", self.sock, "--save", "",
                                      "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if time.time() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        r = redis.Redis(unix_socket_path=self.sock)
        r.mset({f"c{k}": 0 for k in range(keys)})
        return self.sock

    def incr_fn(self, sock):
        import redis

        r = redis.Redis(unix_socket_path=sock)
        return lambda k: r.incr(f"c{k}")

    def total(self, sock, keys):
        import redis

        r = redis.Redis(unix_socket_path=sock)
        return sum(int(v) for v in r.mget([f"c{k}" for k in range(keys)]))

    def teardown(self, sock):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class OursOnRedis(RedisCounters):
    """Our incr on a Redis map (one Lua script per call), on the same kind of private server
    and socket as the INCR row."""

    name = "SharedHashMap(url=).incr (this project, same Redis setup)"

    def setup(self, keys):
        from shared_hashmap import SharedHashMap

        sock = super().setup(keys)
        self.m = SharedHashMap(f"ctr-{os.getpid()}", capacity=2 * keys + 16, max_key_size=16,
                               max_value_size=16, url=f"unix://{sock}")
        self.m.update({k: 0 for k in range(keys)})
        return (sock, self.m.name)

    def incr_fn(self, ctx):
        from shared_hashmap import SharedHashMap

        sock, name = ctx
        return SharedHashMap(name, create=False, url=f"unix://{sock}").incr

    def total(self, ctx, keys):
        return sum(self.m.values())

    def teardown(self, ctx):
        self.m.close()
        super().teardown(ctx[0])


STORES = [Ours, UltraDictCounters, ManagerCounters, LmdbCounters, RedisCounters, OursOnRedis]


def work(store_index, ctx, keys, seconds, seed, barrier, out):
    incr = STORES[store_index]().incr_fn(ctx)
    rng = random.Random(seed)
    picks = [rng.randrange(keys) for _ in range(1024)]
    barrier.wait()
    n, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for k in picks[:64] if keys == 1 else picks:
            incr(k)
        n += 64 if keys == 1 else len(picks)
    out.put((n, n / (time.perf_counter() - start)))


def measure(cls, keys, procs, seconds):
    store = cls()
    ctx = store.setup(keys)
    try:
        fork = mp.get_context("fork")
        barrier, out = fork.Barrier(procs), fork.Queue()
        index = STORES.index(cls)
        workers = [fork.Process(target=work, args=(index, ctx, keys, seconds, s, barrier, out))
                   for s in range(procs)]
        for w in workers:
            w.start()
        results = [out.get(timeout=300) for _ in workers]
        for w in workers:
            w.join()
        counted = sum(n for n, _ in results)
        return sum(rate for _, rate in results), store.total(ctx, keys) == counted
    finally:
        store.teardown(ctx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/python")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cells = [(keys, procs) for keys in (1, 1000) for procs in (1, 2, 4)]
    rates, exact, failed = {}, {}, {}
    for repeat in range(args.repeats):
        for keys, procs in cells:
            for cls in STORES:  # interleaved
                key = (cls.name, keys, procs)
                if cls.name in failed:
                    continue
                try:
                    rate, ok = measure(cls, keys, procs, args.seconds)
                except Exception as e:  # a store that cannot run says so in its row
                    failed[cls.name] = f"{type(e).__name__}: {e}"
                    print(f"{cls.name}: skipped: {failed[cls.name]}", flush=True)
                    continue
                rates.setdefault(key, []).append(rate)
                exact[key] = exact.get(key, True) and ok
                print(f"#{repeat} {cls.name:<56} {keys:>4} keys {procs} procs {rate:>12,.0f}/s exact={ok}", flush=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [f"Machine: {cpu}, {os.cpu_count()} cpus; {args.seconds} s per cell, {args.repeats} repeats "
             "interleaved across stores; increments per second over all processes, median (slowest-fastest); "
             "'exact': the counters' final sum equals the increments counted, in every repeat.", "",
             "| store | " + " | ".join(f"{k} key{'s' if k > 1 else ''} x{p}" for k, p in cells) + " |",
             "|---|" + "---|" * len(cells)]
    for cls in STORES:
        if cls.name in failed:
            lines.append(f"| {cls.name} | " + " | ".join("-" for _ in cells) + " |")
            continue
        row = []
        for keys, procs in cells:
            xs = rates.get((cls.name, keys, procs), [])
            ok = "exact" if exact.get((cls.name, keys, procs)) else "**NOT exact**"
            row.append(f"{statistics.median(xs):,.0f}<br>({min(xs):,.0f}-{max(xs):,.0f}) {ok}" if xs else "-")
        lines.append(f"| {cls.name} | " + " | ".join(row) + " |")
    if failed:
        lines += ["", "Not measured:", ""] + [f"- {n}: {why}" for n, why in failed.items()]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "counters.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
