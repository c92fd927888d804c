"""url="redis+sentinel://..." and replicas=: processes follow a failover by themselves, their
counts stay exact (each incr acknowledged with replicas=1 survives it, none is applied twice),
and a write that no replica took is a ConnectionError that says so."""

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from shared_hashmap import SharedHashMap

from conftest import RedisServer, _free_port

MASTER = "shmap-primary"


def _wait_online(primary, n):
    c = primary.client()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        c.set("shmap-test:ping", 1)
        if c.execute_command("WAIT", n, 500) >= n:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{n} replicas did not come online")


class Sentinels:
    """A primary, two replicas and three sentinels (down after 1 s, quorum 2)."""

    def __init__(self):
        self.primary = RedisServer()
        self.replicas = [RedisServer("--replicaof", "127.0.0.1", str(self.primary.port))
                         for _ in range(2)]
        _wait_online(self.primary, 2)
        self.procs, self.ports = [], []
        self.dir = tempfile.mkdtemp(prefix="shmap-sentinels-")
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        for n in range(3):
            port = _free_port()
            conf = os.path.join(self.dir, f"sentinel-{n}.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 5000\n")
            self.procs.append(subprocess.Popen([binary, conf, "--sentinel"],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
            self.ports.append(port)
        deadline = time.monotonic() + 30
        while self.primary_port() != self.primary.port:
            assert time.monotonic() < deadline, "the sentinels did not start"
            time.sleep(0.05)

    @property
    def url(self):
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{nodes}/{MASTER}/0"

    def primary_port(self):
        """The port all three sentinels name, or None while they disagree or cannot say."""
        import redis

        seen = set()
        for p in self.ports:
            try:
                addr = redis.Redis(port=p, socket_timeout=0.5).execute_command(
                    "SENTINEL", "get-master-addr-by-name", MASTER)
            except redis.RedisError:
                return None
            seen.add(int(addr[1]) if addr else None)
        return seen.pop() if len(seen) == 1 else None

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for s in [self.primary, *self.replicas]:
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _count(url, name, stop):
    """(incrs acknowledged, incrs made on the primary but reported not replicated)."""
    m = SharedHashMap(name, create=False, url=url, timeout=10, replicas=1)
    acked = unsure = 0
    while not stop.is_set():
        try:
            m.incr("n")
            acked += 1
        except ConnectionError as e:
            # After the failover one replica is left, and it takes seconds (more on a loaded
            # machine) to resync from the new primary: replicas=1 then rightly says the
            # write was not replicated. Any other error fails the test.
            assert "of the 1 replicas" in str(e), e
            unsure += 1
        time.sleep(0.002)
    return acked, unsure


def test_processes_follow_a_failover_and_acknowledged_incrs_survive(name):
    s = Sentinels()
    try:
        m = SharedHashMap(name, url=s.url, timeout=10, replicas=1)
        m["n"] = 0
        ctx = mp.get_context("spawn")
        with ctx.Manager() as manager:
            stop = manager.Event()
            with ctx.Pool(2) as pool:
                counts = pool.starmap_async(_count, [(s.url, name, stop)] * 2)
                time.sleep(1.0)
                os.kill(s.primary.proc.pid, signal.SIGKILL)
                killed = time.monotonic()
                while s.primary_port() in (None, s.primary.port):
                    assert time.monotonic() - killed < 30, "no failover in 30 s"
                    time.sleep(0.05)
                time.sleep(2)
                stop.set()
                acked = counts.get(timeout=60)
        acked_total = sum(a for a, _ in acked)
        unsure = sum(u for _, u in acked)
        # Every acknowledged incr survived the failover, none counted twice; one reported not
        # replicated may or may not have (it was made on the old primary).
        assert acked_total <= m["n"] <= acked_total + unsure, (m["n"], acked)
        assert min(a for a, _ in acked) > 20, acked
        # Not unlink(): a write, which with replicas=1 may rightly report the one replica
        # left still resyncing (CI met it); the server goes with the test.
        m.close()
    finally:
        s.stop()


def test_a_write_no_replica_took_is_a_connection_error(name):
    primary = RedisServer()
    replica = RedisServer("--replicaof", "127.0.0.1", str(primary.port))
    try:
        _wait_online(primary, 1)
        m = SharedHashMap(name, url=primary.url, timeout=0.8, replicas=1)
        m["k"] = 1
        os.kill(replica.proc.pid, signal.SIGSTOP)
        with pytest.raises(ConnectionError, match="0 of the 1 replicas"):
            m["k"] = 2
        with pytest.raises(ConnectionError, match="replicas"):
            m.incr("n")
        os.kill(replica.proc.pid, signal.SIGCONT)
        m["k"] = 3
        assert m["k"] == 3
        with pytest.raises(TypeError, match="replicas"):
            SharedHashMap(name + "-shm", replicas=1)
    finally:
        replica.stop()
        primary.stop()
