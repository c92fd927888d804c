"""url="rediss://..." as managed services require it: TLS to a private redis-server that
listens on a TLS port only, with certificates the tests make (openssl). The options are
redis-py's names (ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs), as arguments or in
the URL's query; a server the client does not trust is a ConnectionError that says so, at
once; a client certificate the server wants is a PermissionError; bad options are typed."""

import os
import pickle
import ssl
import time

import pytest

from shared_hashmap import SharedHashMap

from conftest import RedisServer, Certs


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    yield c
    c.cleanup()


@pytest.fixture(scope="module")
def tls_server(certs):
    server = RedisServer(certs=certs)
    yield server
    server.stop()


def test_a_map_over_tls_with_the_servers_ca(name, certs, tls_server):
    assert tls_server.url.startswith("rediss://")
    ca = certs.path("ca.crt")
    with SharedHashMap(name, capacity=64, url=tls_server.url, ssl_ca_certs=ca) as m:
        m["a"] = 1
        m.update(b="two", c=3.5)
        assert m.incr("a") == 2 and m.compare_and_set("b", "two", 2)
        assert m.copy() == {"a": 2, "b": 2, "c": 3.5} and len(m) == 3
        # As redis-py's from_url takes them: in the URL's query.
        query = f"{tls_server.url}?ssl_ca_certs={ca}"
        with SharedHashMap(name, create=False, url=query) as other:
            assert other.copy() == m.copy()
        # A pickled handle connects as this one did, over TLS with the same CA.
        again = pickle.loads(pickle.dumps(m))
        assert again["a"] == 2
        again.close()
        # The server saw TLS clients only: it has no plain port at all.
        assert tls_server.client().config_get("port")["port"] == "0"
        m.unlink()


def test_a_server_the_client_does_not_trust_is_a_connection_error_at_once(name, certs,
                                                                          tls_server):
    for kwargs in ({}, {"ssl_ca_certs": certs.path("other-ca.crt")}):
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="certificate verification failed") as e:
            SharedHashMap(name, url=tls_server.url, **kwargs)
        assert "not signed by a CA this client trusts" in str(e.value)
        assert "ssl_ca_certs" in str(e.value)
        assert time.monotonic() - started < 2
    with pytest.raises(FileNotFoundError):  # nothing was made by the refused creates
        SharedHashMap(name, create=False, url=tls_server.url, ssl_ca_certs=certs.path("ca.crt"))


@pytest.mark.parametrize("off", ["none", "NONE", ssl.CERT_NONE])
def test_verification_is_off_only_when_asked(name, tls_server, off):
    with SharedHashMap(name, url=tls_server.url, ssl_cert_reqs=off) as m:
        m["k"] = "v"
        with SharedHashMap(name, create=False, url=f"{tls_server.url}?ssl_cert_reqs=none") as o:
            assert o["k"] == "v"
        for on in ("required", ssl.CERT_REQUIRED):
            with pytest.raises(ConnectionError, match="certificate verification failed"):
                SharedHashMap(name, create=False, url=tls_server.url, ssl_cert_reqs=on)
        m.unlink()


def test_mutual_tls_needs_the_client_certificate(name, certs):
    server = RedisServer("--tls-auth-clients", "yes", certs=certs)
    try:
        ca = certs.path("ca.crt")
        with pytest.raises(PermissionError, match="client certificate"):
            SharedHashMap(name, url=server.url, ssl_ca_certs=ca)
        cert, key = certs.path("client.crt"), certs.path("client.key")
        with SharedHashMap(name, url=server.url, ssl_ca_certs=ca, ssl_certfile=cert,
                           ssl_keyfile=key) as m:
            m["k"] = 1
            # Paths as os.PathLike, and the key in the certificate's own file (as ssl takes it).
            both = certs.path("client-and-key.pem")
            with open(both, "wb") as f:
                f.write(open(cert, "rb").read() + open(key, "rb").read())
            import pathlib

            with SharedHashMap(name, create=False, url=server.url,
                               ssl_ca_certs=pathlib.Path(ca),
                               ssl_certfile=pathlib.Path(both)) as other:
                assert other["k"] == 1
            m.unlink()
    finally:
        server.stop()


def test_bad_tls_options_are_typed_errors(name, certs, tls_server):
    ca = certs.path("ca.crt")
    with pytest.raises(TypeError, match="url"):
        SharedHashMap(name, ssl_ca_certs=ca)  # shared memory: no TLS
    with pytest.raises(ValueError, match="rediss://"):
        SharedHashMap(name, url="redis://127.0.0.1:1/0", ssl_ca_certs=ca)
    with pytest.raises(ValueError, match="no-such.pem"):
        SharedHashMap(name, url=tls_server.url, ssl_ca_certs=certs.path("no-such.pem"))
    with pytest.raises(ValueError, match="no PEM certificate"):
        SharedHashMap(name, url=tls_server.url, ssl_ca_certs=certs.path("client.key"))
    with pytest.raises(ValueError, match="ssl_certfile"):
        SharedHashMap(name, url=tls_server.url, ssl_keyfile=certs.path("client.key"))
    with pytest.raises(ValueError, match="not both"):
        SharedHashMap(name, url=f"{tls_server.url}?ssl_ca_certs={ca}", ssl_ca_certs=ca)
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        SharedHashMap(name, url=tls_server.url, ssl_cert_reqs="maybe")
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        SharedHashMap(name, url=tls_server.url, ssl_cert_reqs=7)
    with pytest.raises(TypeError, match="ssl_cert_reqs"):
        SharedHashMap(name, url=tls_server.url, ssl_cert_reqs=1.5)
    assert not os.path.exists(f"/dev/shm/{name}")
