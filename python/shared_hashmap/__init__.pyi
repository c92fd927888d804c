from ._shared_hashmap import SharedHashMap as SharedHashMap

__all__ = ["SharedHashMap"]
