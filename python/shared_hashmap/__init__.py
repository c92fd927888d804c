"""A dict-like hash map in POSIX shared memory, shared by processes and threads.

    from shared_hashmap import SharedHashMap

    with SharedHashMap(name="my_hashmap", capacity=1024, create=True) as shm:
        shm["key1"] = "value1"
        shm.unlink()
"""

from ._shared_hashmap import SharedHashMap, unlink

__all__ = ["SharedHashMap", "unlink"]
