import functools
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from shared_hashmap import SharedHashMap

_counter = itertools.count()


@pytest.fixture
def name():
    """A segment name no other test uses; unlinked afterwards if the test left it."""
    n = f"shmap-pytest-{os.getpid()}-{next(_counter)}"
    yield n
    try:
        os.unlink(f"/dev/shm/{n}")
    except FileNotFoundError:
        pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on a free loopback port, persistence off."""

    def __init__(self, *extra):
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            reason = "redis-server is not installed (make test installs it)"
            if os.environ.get("SHMAP_REQUIRE_REDIS"):
                pytest.fail(reason)
            pytest.skip(reason)
        self.dir = tempfile.mkdtemp(prefix="shmap-redis-")
        # A port found free may be taken before the server binds it (and a cluster node's bus
        # port, port + 10000, may be in use): try others. Each try keeps the directory; an
        # earlier version removed it on a failed try, so every later try failed too.
        tries = 0
        while tries < 10:
            self.port = _free_port()
            if self.port >= 55000:  # a cluster node also needs port + 10000
                continue
            tries += 1
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return
            self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        raise RuntimeError(f"redis-server did not start in {tries} tries")

    def _wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def _kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    """Three nodes in cluster mode, the slots split between them."""
    import redis

    nodes = [RedisServer("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
             for _ in range(3)]
    clients = [redis.Redis(port=n.port) for n in nodes]
    share = -(-16384 // len(nodes))
    for i, c in enumerate(clients):
        c.execute_command("CLUSTER ADDSLOTS", *range(i * share, min((i + 1) * share, 16384)))
    for n in nodes[1:]:
        clients[0].execute_command("CLUSTER MEET", "127.0.0.1", n.port)
    deadline = time.monotonic() + 20
    def ready(c):
        info = c.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
        if isinstance(info, bytes):
            info = dict(line.split(":", 1) for line in info.decode().split())
        return info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(nodes)

    while not all(ready(c) for c in clients):
        assert time.monotonic() < deadline, "the cluster did not form"
        time.sleep(0.05)
    yield nodes[0].url
    for n in nodes:
        n.stop()


@pytest.fixture(params=["shm", "redis"])
def storage(request):
    return request.param


@pytest.fixture
def Map(storage, request):
    """SharedHashMap on the storage under test: shared memory, or (url=) a Redis server."""
    if storage == "shm":
        return SharedHashMap
    url = request.getfixturevalue("redis_server").url
    return functools.partial(SharedHashMap, url=url)


@pytest.fixture
def shm(Map, name):
    with Map(name, capacity=256, create=True) as m:
        yield m
