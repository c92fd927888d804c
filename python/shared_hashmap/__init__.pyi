from collections.abc import Mapping, MutableMapping
from typing import Any, Iterable, Iterator, Union

from ._shared_hashmap import SharedHashMap as _Map
from ._shared_hashmap import unlink as unlink

# At run time SharedHashMap is the extension type itself, registered as a MutableMapping;
# for type checkers it is declared as one here.

__all__ = ["SharedHashMap", "unlink"]

class SharedHashMap(_Map, MutableMapping[Any, Any]):
    """A dict in a named POSIX shared-memory segment, shared by processes and threads.

    ``SharedHashMap(name, capacity=1024, max_key_size=256, max_value_size=1024, create=True,
    exist_ok=False, trust_foreign=False, track=True, path=None, url=None, timeout=5.0,
    max_capacity=None, username=None, password=None, ssl_ca_certs=None, ssl_certfile=None,
    ssl_keyfile=None, ssl_cert_reqs=None, replicas=0, serializer="pickle")``: see
    ``help(SharedHashMap)`` for every parameter and error. The table grows from ``capacity``
    (doubling when 3/4 used) up to ``max_capacity``. Keys follow dict equality (``1``, ``1.0``
    and ``True`` are one key); values keep their exact type. ``serializer="json"`` stores
    lists and dicts as JSON (which Rust's ``shmap-typed`` reads) instead of pickling them.
    """

    def update(self, other: Union[Mapping[Any, Any], Iterable[tuple[Any, Any]]] = (), /, **kwargs: Any) -> None:
        """Sets every pair (each atomically; the update as a whole is not, except on a Redis
        map, where it is one atomic step and one round trip)."""
    def clear(self) -> None:
        """Removes every entry and gives the memory the entries took back to the system (the
        table keeps its capacity). Other processes' writes wait while it runs; their reads
        go on. On a Redis map: every entry, atomically."""
    def copy(self) -> dict[Any, Any]:
        """A ``dict`` snapshot (safe while others remove keys, unlike ``dict(m)``). Each entry
        as it was at some instant of the scan; entries added or removed meanwhile may or may
        not appear. On Redis: ``HSCAN`` in chunks, so a big map never holds the server."""
    def __eq__(self, other: object) -> bool: ...
    def __or__(self, other: Mapping[Any, Any]) -> dict[Any, Any]: ...
    def __ror__(self, other: Mapping[Any, Any]) -> dict[Any, Any]: ...
    def __ior__(self, other: Any) -> "SharedHashMap": ...
    def __iter__(self) -> Iterator[Any]: ...
