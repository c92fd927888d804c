from ._shared_hashmap import SharedHashMap as SharedHashMap
from ._shared_hashmap import unlink as unlink

__all__ = ["SharedHashMap", "unlink"]
