"""Worker functions for the multiprocess tests (top-level, so spawn can import them)."""

import hashlib
import time

from shared_hashmap import SharedHashMap


def _open(target):
    """A handle on the map: `target` is a shared-memory name, or a handle passed in (pickled:
    it attaches to the same map, on whichever storage, in this process)."""
    return SharedHashMap(target, create=False) if isinstance(target, str) else target


def make_value(key, stamp):
    """A value that proves itself: its body is derived from its key and stamp, its length varies."""
    digest = hashlib.blake2b(f"{key}:{stamp}".encode(), digest_size=16).hexdigest()
    return f"{key}:{stamp}:" + digest * (1 + stamp % 12)


def check_value(key, value):
    k, stamp, body = value.split(":", 2)
    if k != str(key):
        raise AssertionError(f"value of {k!r} returned for key {key!r}")
    expected = make_value(key, int(stamp))
    if value != expected:
        raise AssertionError(f"torn value for {key!r}: {value[:60]!r}...")


def writer(name, keys, writer_id, rounds):
    shm = _open(name)
    for r in range(rounds):
        for k in range(keys):
            shm[k] = make_value(k, writer_id * 1_000_000 + r)
    shm.close()
    return rounds * keys


def reader(name, keys, seconds):
    shm = _open(name)
    reads, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for k in range(keys):
            v = shm.get(k)
            if v is None:
                raise AssertionError(f"key {k} reported missing")
            check_value(k, v)
            reads += 1
    shm.close()
    return reads


def insert_same(handle, keys):
    """Uses a handle passed in (pickled: re-attached by name in this process)."""
    for k in range(keys):
        handle[f"same-{k}"] = k
    return len(handle)


def churn(name, prefix, keys, rounds):
    shm = _open(name)
    for r in range(rounds):
        for k in range(keys):
            shm[f"{prefix}-{r}-{k}"] = r
        for k in range(keys):
            del shm[f"{prefix}-{r}-{k}"]
    shm.close()


def add_from_child(handle, key, value):
    handle[key] = value
    return handle[key]


def big_value(key, stamp, size):
    """A value of about `size` characters that proves itself, like make_value."""
    head = make_value(key, stamp)
    return head + "#" + head * (size // len(head))


def check_big(key, value):
    head, _, rest = value.partition("#")
    check_value(key, head)
    if rest != head * (len(rest) // len(head)) or len(rest) % len(head):
        raise AssertionError(f"torn large value for {key!r}")


def big_rewriter(name, keys, seconds):
    """Rewrites keys 0..keys with ~200 kB self-checking values for `seconds`."""
    shm = _open(name)
    deadline, stamp = time.monotonic() + seconds, 1
    while time.monotonic() < deadline:
        for k in range(keys):
            shm[k] = big_value(k, stamp, 200_000)
        stamp += 1
    shm.close()


def rewrite_forever(name, key, size):
    """Rewrites `key` with `size` characters of 'y', then of 'z', until killed."""
    shm = _open(name)
    values = ["y" * size, "z" * size]
    i = 0
    while True:
        shm[key] = values[i % 2]
        i += 1


def incr_many(name, key, times):
    """Adds 1 to `key` `times` times through `incr` (atomic across processes)."""
    shm = _open(name)
    for _ in range(times):
        shm.incr(key)
    shm.close()
    return times


def setdefault_race(name, key, mine, start):
    """Waits for `start` (a wall-clock time), then setdefault(key, mine); returns what it got."""
    shm = _open(name)
    while time.time() < start:
        pass
    got = shm.setdefault(key, mine)
    shm.close()
    return got


def fill(name, prefix, keys):
    """Inserts its own keys `prefix-0 ..` (each new), then reads every one back."""
    shm = _open(name)
    for k in range(keys):
        shm[f"{prefix}-{k}"] = make_value(k, k)
    for k in range(keys):
        check_value(k, shm[f"{prefix}-{k}"])
    shm.close()
    return keys


def typed_value(stamp):
    """A value whose type and contents follow from `stamp` alone, so a reader can check every
    byte: ASCII and non-ASCII str of varying length, bytes, int and float (each built straight
    from shared memory by a get, or decoded after it)."""
    kind = stamp % 5
    if kind == 0:
        return f"{stamp}:" + "a" * (stamp % 70)
    if kind == 1:
        return f"{stamp}:" + "é" * (stamp % 40)
    if kind == 2:
        return f"{stamp}:".encode() + bytes([stamp % 256]) * (stamp % 60)
    if kind == 3:
        return stamp * 1_000_003
    return stamp + 0.5


def check_typed(value):
    """Raises unless `value` is exactly `typed_value` of the stamp it carries."""
    if isinstance(value, (str, bytes)):
        head = value.split(b":" if isinstance(value, bytes) else ":", 1)[0]
        stamp = int(head)
    elif isinstance(value, int):
        stamp = value // 1_000_003
    elif isinstance(value, float):
        stamp = int(value)
    else:
        raise AssertionError(f"a value of type {type(value).__name__}: {value!r}")
    expected = typed_value(stamp)
    if type(value) is not type(expected) or value != expected:
        raise AssertionError(f"torn value {value!r:.80}, expected {expected!r:.80}")


def typed_rewriter(name, keys, seconds):
    """Rewrites keys 0..keys with `typed_value`s of rising stamps, every type in turn, for
    `seconds`; returns how many it wrote."""
    shm = _open(name)
    stamp, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for k in range(keys):
            shm[k] = typed_value(stamp + k)
        stamp += keys + 1  # so each key's type changes every round
    shm.close()
    return stamp // (keys + 1) * keys


def typed_reader(name, keys, seconds):
    """Gets keys 0..keys for `seconds`, checking every value; returns how many it read."""
    shm = _open(name)
    reads, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for k in range(keys):
            check_typed(shm[k])
            reads += 1
    shm.close()
    return reads


def stamp_writer(name, key, readers, seconds):
    """Once `readers` readers are ready, sets `key` to str stamps 1, 2, ... (lengths vary)
    for `seconds`, then `done` to the last stamp. Returns how many it wrote."""
    shm = _open(name)
    deadline = time.monotonic() + 60  # a reader that died must not hang the test
    while shm.get("ready", 0) < readers:
        if time.monotonic() > deadline:
            raise AssertionError("the readers never said they were ready")
        time.sleep(0.001)
    stamp, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        stamp += 1
        shm[key] = f"{stamp}:" + "s" * (stamp % 50)
    shm["done"] = stamp
    shm.close()
    return stamp


def stamp_reader(name, key):
    """Gets `key` until the writer is done: the stamps it sees never go back, and once it sees
    `done` the value is the last one written (a get that returned a kept object for a slot
    rewritten since would fail both). Returns how many distinct stamps it saw."""
    shm = _open(name)
    shm.incr("ready")
    seen, distinct = -1, 0
    deadline = time.monotonic() + 60  # a writer that died must not hang the test
    while True:
        if time.monotonic() > deadline:
            raise AssertionError("the writer never said it was done")
        done = shm.get("done")
        value = shm[key]
        stamp = int(value.split(":", 1)[0])
        if value != f"{stamp}:" + "s" * (stamp % 50) or stamp < seen:
            raise AssertionError(f"{value!r} after stamp {seen}")
        distinct += stamp != seen
        seen = stamp
        if done is not None:
            if stamp != done:
                raise AssertionError(f"stamp {stamp} after done, {done} was written")
            shm.close()
            return distinct
