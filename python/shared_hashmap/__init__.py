"""A dict-like hash map in POSIX shared memory, shared by processes and threads.

    from shared_hashmap import SharedHashMap

    with SharedHashMap(name="my_hashmap", capacity=1024, create=True) as shm:
        shm["key1"] = "value1"
        shm.incr("hits")                 # atomic across processes
        shm.unlink()
"""

from collections.abc import MutableMapping

from ._shared_hashmap import SharedHashMap, unlink

# The extension type has all of MutableMapping's methods itself (a Python subclass would cost
# every get a slower method call); registering makes isinstance and the ABC machinery agree.
MutableMapping.register(SharedHashMap)

__all__ = ["SharedHashMap", "unlink"]
