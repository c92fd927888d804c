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


class Certs:
    """A test CA, a server certificate it signed for 127.0.0.1 and localhost, a client one
    (mutual TLS), and another CA that signed nothing the server shows; made with the openssl
    command (EC keys: milliseconds each) in a directory removed by cleanup()."""

    def __init__(self):
        openssl = shutil.which("openssl")
        if openssl is None:
            reason = "openssl is not installed (make test installs it)"
            if os.environ.get("SHMAP_REQUIRE_OPENSSL"):
                pytest.fail(reason)
            pytest.skip(reason)
        self.dir = tempfile.mkdtemp(prefix="shmap-tls-")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]

        def run(*args):
            subprocess.run([openssl, *args], cwd=self.dir, check=True, capture_output=True)

        for ca in ("ca", "other-ca"):
            run("req", "-x509", "-nodes", "-days", "2", "-subj", f"/CN=shmap test {ca}", *ec,
                "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        with open(os.path.join(self.dir, "leaf.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n"
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for leaf in ("server", "client"):
            run("req", "-nodes", "-subj", f"/CN=shmap test {leaf}", *ec,
                "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr")
            run("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", f"{leaf}.crt")

    def path(self, name):
        return os.path.join(self.dir, name)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A private redis-server on a free loopback port, persistence off; with certs=, one that
    speaks TLS only (--port 0 --tls-port PORT), clients' certificates optional unless extra
    says --tls-auth-clients yes."""

    def __init__(self, *extra, certs=None):
        self.certs = certs
        if certs is not None:
            extra = ("--tls-cert-file", certs.path("server.crt"),
                     "--tls-key-file", certs.path("server.key"),
                     "--tls-ca-cert-file", certs.path("ca.crt"),
                     "--tls-auth-clients", "no", *extra)
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
            ports = (["--port", "0", "--tls-port", str(self.port)] if certs is not None
                     else ["--port", str(self.port)])
            self.proc = subprocess.Popen(
                [binary, *ports, "--bind", "127.0.0.1", "--save", "",
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
                    if self.certs is not None:
                        s = self._tls_context().wrap_socket(s, server_hostname="127.0.0.1")
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def _tls_context(self):
        import ssl

        ctx = ssl.create_default_context(cafile=self.certs.path("ca.crt"))
        ctx.load_cert_chain(self.certs.path("client.crt"), self.certs.path("client.key"))
        return ctx

    def client(self):
        """redis-py on this server, for a test's own commands (over TLS for a TLS server)."""
        import redis

        if self.certs is None:
            return redis.Redis(port=self.port)
        return redis.Redis(port=self.port, ssl=True, ssl_ca_certs=self.certs.path("ca.crt"),
                           ssl_certfile=self.certs.path("client.crt"),
                           ssl_keyfile=self.certs.path("client.key"))

    @property
    def url(self):
        scheme = "redis" if self.certs is None else "rediss"
        return f"{scheme}://127.0.0.1:{self.port}/0"

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
