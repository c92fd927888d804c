"""What a hostile or unlucky environment does to the map: each test reproduces one failure
that was seen (issue 10) and proves it is gone."""

import contextlib
import errno
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shared_hashmap
from shared_hashmap import SharedHashMap

import _workers


def run_python(code, *, timeout=120, prefix=()):
    """Runs `code` in a fresh interpreter (optionally under a wrapper such as unshare)."""
    here = os.path.dirname(__file__)
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, env=env)


# 1. close() while other threads use the handle ------------------------------------------------

def test_close_while_other_threads_get_scan_and_set_never_deadlocks():
    # In a child interpreter: a deadlock there fails this test by timeout instead of hanging it.
    out = run_python("""
        import os, threading
        from shared_hashmap import SharedHashMap
        name = f"shmap-pytest-close-{os.getpid()}"
        for round in range(60):
            m = SharedHashMap(name, capacity=512)
            for i in range(200):
                m[i] = "v" * 50
            stop = threading.Event()
            def get():
                while not stop.is_set():
                    try: m.get(7)
                    except ValueError: return          # closed
            def scan():
                while not stop.is_set():
                    try: m.keys()
                    except ValueError: return
            def put():
                while not stop.is_set():
                    try: m[3] = "w"
                    except ValueError: return
            ts = [threading.Thread(target=f) for f in (get, get, scan, scan, put)]
            for t in ts: t.start()
            m.close()
            stop.set()
            for t in ts: t.join()
            assert m.closed
            SharedHashMap(name, create=False).unlink()
        print("ok")
    """, timeout=90)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# 2. handles inherited over fork -------------------------------------------------------------

def _fork_reader(handle, keys, seconds, write_after, errors):
    """Reads through the inherited handle; writes too once `write_after` seconds have passed
    (a write renewed the handle's lock file, hiding the bug from reads that came after)."""
    start, n = time.monotonic(), 0
    while time.monotonic() < start + seconds:
        for k in range(keys):
            try:
                v = handle.get(k)
                _workers.check_big(k, v)
                if time.monotonic() > start + write_after:
                    handle[f"child-{os.getpid()}"] = n
                n += 1
            except Exception as e:  # counted, the first few reported
                errors.put(f"{type(e).__name__}: {e}")
                return


def test_fork_children_read_and_write_through_inherited_handles(name):
    keys = 4
    m = SharedHashMap(name, capacity=64, max_value_size=300_000)
    for k in range(keys):
        m[k] = _workers.big_value(k, 0, 200_000)
    ctx = mp.get_context("fork")
    # A writer attached on its own rewrites large values, so readers meet slots mid-write and
    # must wait (and check the writer's liveness through their lock file).
    writer = ctx.Process(target=_workers.big_rewriter, args=(name, keys, 3.0))
    writer.start()
    errors = ctx.Queue()
    children = [ctx.Process(target=_fork_reader, args=(m, keys, 2.0, after, errors))
                for after in (1.0, 1.0, 99)]
    for c in children:
        c.start()
    for c in children + [writer]:
        c.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [], found[:3]
    assert all(c.exitcode == 0 for c in children + [writer])
    m.unlink()
    m.close()


# 3. /dev/shm too small for the map ------------------------------------------------------------

def small_shm(code):
    """Runs `code` with a private 8 MiB tmpfs on /dev/shm (a mount namespace of its own)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here (needs root): {probe.stderr.strip()}")
    script = f'mount -t tmpfs -o size=8m tmpfs /dev/shm && exec "$@"'
    return run_python(code, prefix=("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"))


def test_a_map_dev_shm_cannot_hold_is_an_enospc_error_not_sigbus():
    out = small_shm("""
        import errno, os
        from shared_hashmap import SharedHashMap
        try:
            SharedHashMap("too-big", capacity=1_000_000)   # 17 MB of buckets
            print("created")
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            assert "/dev/shm" in str(e), e
            print("refused")
        assert os.listdir("/dev/shm") == [], os.listdir("/dev/shm")
        # Fill the tmpfs almost completely, then ask for a map that would need the rest.
        with open("/dev/shm/filler", "wb") as f:
            f.write(b"x" * ((8 << 20) - (16 << 10)))
        try:
            SharedHashMap("small", capacity=1000)
            print("created")
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            print("refused")
        assert os.listdir("/dev/shm") == ["filler"], os.listdir("/dev/shm")
        os.unlink("/dev/shm/filler")
        # A map that fits, whose entries then do not: the insert that needs a page the tmpfs
        # cannot give is refused, and the map keeps what it holds and works on.
        with open("/dev/shm/filler", "wb") as f:
            f.write(b"x" * ((8 << 20) - (512 << 10)))
        with SharedHashMap("fits", capacity=1000) as m:
            held = 0
            try:
                for i in range(1000):
                    m[i] = "v" * 1000
                    held += 1
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                print("full")
            assert 0 < held < 1000 and len(m) == held, (held, len(m))
            assert all(m[i] == "v" * 1000 for i in range(held))
            os.unlink("/dev/shm/filler")
            for i in range(1000):
                m[i] = "v" * 100
            assert len(m) == 1000
            m.unlink()
    """)
    assert out.returncode == 0, f"exit {out.returncode} (-7 is SIGBUS): {out.stderr[-2000:]}"
    assert out.stdout.split() == ["refused", "refused", "full"], out.stdout


# 4. segments other users could have written ----------------------------------------------------

def test_attach_refuses_a_segment_others_may_write_unless_trusted(name):
    with SharedHashMap(name, capacity=16) as m:
        m["k"] = "v"
        os.chmod(f"/dev/shm/{name}", 0o666)
        with pytest.raises(PermissionError, match="group or others may write") as e:
            SharedHashMap(name, create=False)
        assert e.value.errno == errno.EACCES
        with SharedHashMap(name, create=False, trust_foreign=True) as t:
            assert t["k"] == "v"
        m.unlink()


def test_attach_refuses_a_segment_another_user_owns(name):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the segment to another user")
    with SharedHashMap(name, capacity=16) as m:
        os.chown(f"/dev/shm/{name}", 65534, 65534)
        with pytest.raises(PermissionError, match="owned by uid 65534"):
            SharedHashMap(name, create=False)
        m.unlink()


# 5. a writer stopped in the middle of a large value -----------------------------------------

@contextlib.contextmanager
def _map_with_a_rewriter(name, big=4 << 20):
    """A map whose key "big" another process rewrites with `big`-character values for ever;
    yields (map, writer process) once it has written, kills it and unlinks after."""
    m = SharedHashMap(name, capacity=8, max_value_size=big + 100)
    m["big"] = "x" * big
    writer = mp.get_context("spawn").Process(target=_workers.rewrite_forever, args=(name, "big", big))
    writer.start()
    try:
        while m["big"] == "x" * big:  # wait until it writes
            time.sleep(0.01)
        yield m, writer
    finally:
        writer.kill()
        writer.join()
        m.unlink()


def test_a_get_never_waits_for_a_writer_stopped_in_a_large_value(name):
    # A writer writes a new value into a record of its own, where no reader reads, and then
    # publishes it with two stores: stopped anywhere in a 4 MiB value, it blocks no get of the
    # key (when values were rewritten in place, nearly every stop here blocked the get until
    # the writer resumed). Only a stop between those two stores makes a get wait, and then it
    # must wait without the GIL: the main thread keeps running.
    big = 4 << 20
    stalls = 0
    with _map_with_a_rewriter(name, big) as (m, writer):
        for _ in range(100):
            os.kill(writer.pid, signal.SIGSTOP)
            done, got = threading.Event(), []
            reader = threading.Thread(target=lambda: (got.append(m.get("big")), done.set()))
            reader.start()
            ticks, start = 0, time.monotonic()
            while not done.is_set() and time.monotonic() - start < 0.3:
                ticks += 1  # runs only while the reader does not hold the GIL
                time.sleep(0.001)
            if not done.is_set():
                stalls += 1
                assert ticks > 50, f"the main thread ran {ticks} times in 0.3 s: the get held the GIL"
            os.kill(writer.pid, signal.SIGCONT)
            reader.join(10)
            assert not reader.is_alive()
            assert len(got[0]) == big and got[0][0] in "xyz", "torn value"
            # Let the writer run on to another point of its loop.
            time.sleep(random.uniform(0.001, 0.008))
    assert stalls <= 2, f"{stalls} of 100 gets waited for the stopped writer"


def _set_small(m, outcome):
    started = time.monotonic()
    try:
        m["big"] = "small"
        outcome.append("ok")
    except Exception as e:  # reported by the test, not lost in the thread
        outcome.append(repr(e))
    outcome.append(time.monotonic() - started)


def test_a_set_waiting_for_a_stopped_writer_releases_the_gil(name):
    # A set takes the key's lock with the GIL held (releasing the GIL costs as much as the
    # write), but only for a short spin: a writer of the same key stopped while it holds the
    # lock must not freeze this process's other threads. The main thread measures the longest
    # gap between its ticks while a set waits for the stopped writer.
    with _map_with_a_rewriter(name) as (m, writer):
        for _ in range(100):
            os.kill(writer.pid, signal.SIGSTOP)
            outcome = []
            setter = threading.Thread(target=_set_small, args=(m, outcome))
            started = last = time.monotonic()
            setter.start()
            gap = 0.0
            while last - started < 0.3:
                time.sleep(0.001)  # returns only when the setter does not hold the GIL
                now = time.monotonic()
                gap, last = max(gap, now - last), now
            os.kill(writer.pid, signal.SIGCONT)
            setter.join(10)
            assert not setter.is_alive()
            time.sleep(random.uniform(0.001, 0.008))  # as in the get test above
            if outcome[-1] > 0.25:  # the set waited for the stopped writer
                assert gap < 0.1, f"the main thread stood still for {gap:.2f} s: the set held the GIL"
                assert outcome[0] == "ok", outcome
                break
        else:
            pytest.fail("the writer was never stopped while holding the key's lock")


# 6. (Rust: process-tests/tests/multiprocess.rs, snapshots_never_list_a_key_twice) ------------------
# 7. (Rust: harness/tests/cli.rs, workers die with the harness) -------------------------------

# 8. a restrictive umask ---------------------------------------------------------------------

def test_create_under_a_restrictive_umask_as_an_ordinary_user():
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv(1) to run as an ordinary user")
    out = run_python("""
        import os, stat
        from shared_hashmap import SharedHashMap
        os.umask(0o277)
        name = f"shmap-pytest-umask-{os.getpid()}"
        # track=False: this machine's interpreter cannot be re-executed by an ordinary user,
        # which multiprocessing's resource tracker needs.
        with SharedHashMap(name, capacity=16, track=False) as m:
            m["k"] = "v"
            mode = stat.S_IMODE(os.stat(f"/dev/shm/{name}").st_mode)
            assert mode == 0o600, oct(mode)
            with SharedHashMap(name, create=False) as again:
                assert again["k"] == "v"
            m.unlink()
        assert not os.path.exists(f"/dev/shm/{name}")
        print("ok")
    """, prefix=(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# 9. a creator that died before initialising ---------------------------------------------------

def _abandon(name):
    """What a creator killed between shm_open and publishing leaves: a file with no header."""
    fd = os.open(f"/dev/shm/{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, 8192)
    os.close(fd)
    time.sleep(1.1)  # older than the window in which a live creator may look like this


def test_an_abandoned_segment_is_reported_and_replaced_with_exist_ok(name):
    _abandon(name)
    with pytest.raises(ValueError, match="abandoned"):
        SharedHashMap(name, create=False)
    with pytest.raises(FileExistsError):
        SharedHashMap(name)
    with SharedHashMap(name, capacity=32, exist_ok=True) as m:
        m["k"] = 1
        with SharedHashMap(name, capacity=32, exist_ok=True) as again:  # now attaches
            assert again["k"] == 1
        with SharedHashMap(name, exist_ok=True) as any_size:  # no sizes asked: any will do
            assert any_size.capacity == 32
        with pytest.raises(ValueError, match="capacity=32 \\(asked for 64\\)"):
            SharedHashMap(name, capacity=64, exist_ok=True)
        m.unlink()


def test_unlink_by_name_removes_any_segment(name):
    _abandon(name)
    shared_hashmap.unlink(name)
    assert not os.path.exists(f"/dev/shm/{name}")
    with pytest.raises(FileNotFoundError):
        shared_hashmap.unlink(name)


# 10. small ones -------------------------------------------------------------------------------

def test_limits_are_stated_in_the_users_terms(name):
    with pytest.raises(ValueError, match="max_key_size must be an integer from 1 to 4294967294 "
                       r"or None \(no limit\), got 4294967296"):
        SharedHashMap(name, max_key_size=2**32)
    with pytest.raises(ValueError) as e:
        SharedHashMap(name, max_value_size=2**32 - 1)
    assert "4294967294" in str(e.value) and "4294967296" not in str(e.value)
    assert not os.path.exists(f"/dev/shm/{name}")


@pytest.mark.parametrize("param", ["capacity"])  # None lifts max_key_size and max_value_size
def test_none_is_not_a_size(name, param):
    with pytest.raises(TypeError, match=f"{param} must be an int, not NoneType"):
        SharedHashMap(name, **{param: None})


def test_os_errors_carry_their_errno(name):
    with pytest.raises(FileNotFoundError) as e:
        SharedHashMap(name, create=False)
    assert e.value.errno == errno.ENOENT
    with SharedHashMap(name, capacity=4) as m:
        with pytest.raises(FileExistsError) as e:
            SharedHashMap(name)
        assert e.value.errno == errno.EEXIST
        m.unlink()


# 11. a map that grew, its table damaged (issue 33, item 4) ----------------------------------

@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "remove"])
def test_a_damaged_table_of_a_grown_map_is_a_corrupt_map_at_once(name, damage):
    with SharedHashMap(name, capacity=8, track=False) as m:
        for i in range(20):
            m[i] = i
        assert m.capacity > 8
    tables = [f for f in os.listdir("/dev/shm") if f.startswith(f"{name}.t")]
    assert len(tables) == 1
    table = f"/dev/shm/{tables[0]}"
    if damage == "truncate":
        os.truncate(table, 100)
    elif damage == "empty":
        os.truncate(table, 0)
    elif damage == "garbage":
        with open(table, "r+b") as f:
            f.write(b"\x00" * 4096)  # the header gone, as if its creator never finished
    else:
        os.unlink(table)
    try:
        with SharedHashMap(name, create=False) as m:
            for op in [lambda: m[1], lambda: m.get(2), lambda: len(m), lambda: m.__setitem__(3, 3)]:
                with pytest.raises(ValueError, match="corrupt"):
                    op()
    finally:
        shared_hashmap.unlink(name)
    assert [f for f in os.listdir("/dev/shm") if f.startswith(name)] == []
