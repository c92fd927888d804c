"""url= on a server with users and passwords (Redis 6 ACLs), as teams run it in production: a
user who may only read attaches and reads, a write of theirs is a PermissionError naming what
they lack, a wrong password is a PermissionError, and a password never shows in a repr, an
error or the url attribute."""

import pickle

import pytest
import redis

from shared_hashmap import SharedHashMap

from conftest import RedisServer

ADMIN_PASS = "adm1n-S3cret"
READER_PASS = "r3ader-S3cret"
# Reading a map's shape and entries needs plain read commands only: no script rights.
READER_RULES = ["~shmap:*", "+@read", "+hget", "+hgetall", "+hscan", "+hlen", "+hexists",
                "+exists"]


@pytest.fixture(scope="module")
def acl_server():
    """A private server with users admin (everything) and reader; the default user off."""
    server = RedisServer()
    c = redis.Redis(port=server.port)
    c.execute_command("ACL", "SETUSER", "admin", "on", f">{ADMIN_PASS}", "~*", "+@all")
    c.execute_command("ACL", "SETUSER", "reader", "on", f">{READER_PASS}", *READER_RULES)
    c.execute_command("ACL", "SETUSER", "default", "off")
    yield server
    server.stop()


def url_as(server, user, password):
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


@pytest.fixture
def filled(name, acl_server):
    m = SharedHashMap(name, capacity=64, url=url_as(acl_server, "admin", ADMIN_PASS))
    m.update(a=1, b="two")
    yield m
    m.unlink()
    m.close()


def _no_secret(text):
    assert ADMIN_PASS not in text and READER_PASS not in text, text


def test_a_reader_attaches_reads_and_a_write_is_a_permission_error(name, acl_server, filled):
    by_url = {"url": url_as(acl_server, "reader", READER_PASS)}
    by_args = {"url": acl_server.url, "username": "reader", "password": READER_PASS}
    for how in (by_url, by_args):
        r = SharedHashMap(name, create=False, **how)
        assert r["a"] == 1 and r.get("b") == "two" and "a" in r and len(r) == 2
        assert r.copy() == {"a": 1, "b": "two"} and sorted(r) == ["a", "b"]
        assert r.capacity == 64
        with pytest.raises(PermissionError, match="evalsha") as e:
            r["c"] = 3
        _no_secret(str(e.value))
        with pytest.raises(PermissionError, match="evalsha"):
            r.incr("a")
        with pytest.raises(PermissionError, match="evalsha"):
            del r["a"]
        with pytest.raises(PermissionError):
            r.clear()
        # Creating a map that exists says so without needing the rights to create one.
        with pytest.raises(FileExistsError):
            SharedHashMap(name, **how)
        r.close()
    assert filled.copy() == {"a": 1, "b": "two"}, "nothing the reader tried changed the map"


def test_a_wrong_or_missing_password_is_a_permission_error(name, acl_server, filled):
    wrong = "not-the-Password"
    for kwargs in ({"url": url_as(acl_server, "reader", wrong)},
                   {"url": acl_server.url, "username": "reader", "password": wrong},
                   {"url": acl_server.url, "password": wrong},
                   {"url": acl_server.url}):
        with pytest.raises(PermissionError) as e:
            SharedHashMap(name, create=False, **kwargs)
        assert wrong not in str(e.value), e.value


def test_the_password_never_shows_and_handles_pickle_with_it(name, acl_server, filled):
    r = SharedHashMap(name, create=False, url=acl_server.url, username="reader",
                      password=READER_PASS)
    u = SharedHashMap(name, create=False, url=url_as(acl_server, "reader", READER_PASS))
    for m in (r, u):
        _no_secret(repr(m))
        _no_secret(m.url)
        again = pickle.loads(pickle.dumps(m))  # the child reconnects as the same user
        assert again["a"] == 1
        with pytest.raises(PermissionError):
            again["a"] = 2
        again.close()
        m.close()
    with pytest.raises(ValueError, match="password") as e:
        SharedHashMap(name, create=False, url=url_as(acl_server, "reader", READER_PASS),
                      password=READER_PASS)
    _no_secret(str(e.value))
