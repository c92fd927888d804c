import os
import itertools

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


@pytest.fixture
def shm(name):
    with SharedHashMap(name, capacity=256, create=True) as m:
        yield m
