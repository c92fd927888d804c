import os
import ssl
from types import TracebackType
from typing import Any, Iterator, Literal, Optional, Type, Union

class SharedHashMap:
    """The extension type under ``shared_hashmap.SharedHashMap`` (which adds the rest of
    ``MutableMapping``). See that class for the parameters and errors."""

    def __init__(
        self,
        name: Optional[str] = None,
        capacity: int = 1024,
        max_key_size: Optional[int] = 256,
        max_value_size: Optional[int] = 1024,
        create: bool = True,
        exist_ok: bool = False,
        trust_foreign: bool = False,
        track: bool = True,
        path: Optional[Union[str, "os.PathLike[str]"]] = None,
        url: Optional[str] = None,
        timeout: float = 5.0,
        max_capacity: Optional[int] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        ssl_ca_certs: Optional[Union[str, "os.PathLike[str]"]] = None,
        ssl_certfile: Optional[Union[str, "os.PathLike[str]"]] = None,
        ssl_keyfile: Optional[Union[str, "os.PathLike[str]"]] = None,
        ssl_cert_reqs: Optional[Union[Literal["required", "optional", "none"], "ssl.VerifyMode"]] = None,
        replicas: int = 0,
        serializer: Literal["pickle", "json"] = "pickle",
    ) -> None:
        """``serializer``: how values other than str, bytes, int, float, bool, None and tuples
        of these are stored. ``"pickle"`` (the default): any picklable value, which only
        Python reads. ``"json"``: lists and dicts with str keys (of the types above, nested),
        stored as JSON, which Rust's ``shmap-typed`` reads as ``Json<T>``; anything else is
        ``TypeError``, NaN and infinities ``ValueError``. Either handle reads what the other
        wrote: JSON comes back as lists and dicts.

        With ``url=``: ``username``/``password`` log in as a server user (Redis 6 ACLs), as
        ``redis://user:password@host`` does (give the password in one place, not both:
        ``ValueError``). A wrong one is ``PermissionError``; a user who may only read attaches
        and reads, and each write of theirs is ``PermissionError`` naming the missing right.
        Passwords never show in ``repr``, ``url`` or errors.

        With ``url="rediss://..."`` (TLS, the server verified against the system's roots), as
        redis-py names them (also in the URL's query): ``ssl_ca_certs`` a PEM file of CA
        certificates to verify the server with instead; ``ssl_certfile``/``ssl_keyfile`` the
        client's certificate and key (mutual TLS); ``ssl_cert_reqs="none"`` (or
        ``ssl.CERT_NONE``) no verification, only when asked. A server certificate that does not
        verify is ``ConnectionError``; a client certificate the server wanted,
        ``PermissionError``; an unreadable or non-PEM file, ``ValueError``.

        ``url="redis+sentinel://host1:26379,host2:26379/MASTER/0"`` follows the primary that
        Redis Sentinels name, through failovers. Calls are retried within ``timeout`` after a
        broken connection; every write carries a request id, so none is applied twice.
        ``replicas=N`` makes each write wait (``WAIT``) until N replicas have it, or raise
        ``ConnectionError`` after 3/4 of ``timeout``."""
    def flush(self) -> None:
        """Writes a file-backed map's pages to its file (msync); at once for shared memory
        and Redis."""
    def set(self, key: Any, value: Any) -> None:
        """Sets ``key`` to ``value`` (atomic)."""
    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is absent. While nobody changes the
        entry, gets of a str, bytes, int or float return the same object (the handle keeps
        those it returned, up to 8 MiB, with the str, bytes, int or float key object of the
        last get, which a get or ``in`` of that very object then finds by identity, as a dict
        does); other values are unpickled afresh."""
    def delete(self, key: Any) -> bool:
        """Removes ``key``; ``True`` if it was present."""
    def size(self) -> int:
        """Number of entries."""
    def incr(self, key: Any, delta: Union[int, float] = 1, default: Union[int, float] = 0) -> Union[int, float]:
        """Adds ``delta`` to the number at ``key`` (``default`` if absent), atomically; returns
        the new value. ``TypeError`` if the stored value is not an int or float (unchanged);
        ``OverflowError`` past 128-bit ints."""
    def compare_and_set(self, key: Any, expected: Any, new: Any) -> bool:
        """Sets ``key`` to ``new`` only if it holds ``expected`` (same type and value); returns
        whether it did. Atomic."""
    def setdefault(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, after setting it to ``default`` if absent. Atomic."""
    def pop(self, key: Any, *default: Any) -> Any:
        """Removes ``key`` and returns its value; ``default`` if absent, else ``KeyError``."""
    def popitem(self) -> tuple[Any, Any]:
        """Removes and returns some ``(key, value)``; ``KeyError`` if empty. Atomic."""
    def close(self) -> None:
        """Unmaps this handle (never waits); the segment stays for other processes."""
    def unlink(self) -> None:
        """Removes the segment's name; open handles keep working (the last to close removes
        the tables of a map that grew). A Redis map is deleted from the server for every
        handle."""
    def keys(self) -> list[Any]:
        """A snapshot list of the keys. On Redis: ``HSCAN`` in chunks (a big map never holds
        the server); keys added or removed meanwhile may or may not appear, none twice."""
    def values(self) -> list[Any]:
        """A snapshot list of the values."""
    def items(self) -> list[tuple[Any, Any]]:
        """A snapshot list of the pairs."""
    def __getitem__(self, key: Any) -> Any: ...
    def __setitem__(self, key: Any, value: Any) -> None: ...
    def __delitem__(self, key: Any) -> None: ...
    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __enter__(self) -> "SharedHashMap": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Literal[False]: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Optional[str]: ...
    @property
    def url(self) -> Optional[str]:
        """The Redis server of a map made with ``url=`` (password hidden); else ``None``."""
    @property
    def capacity(self) -> int:
        """Buckets now: the table doubles when 3/4 used, up to ``max_capacity``."""
    @property
    def max_capacity(self) -> int:
        """The most buckets the table may grow to; only then is it full (RuntimeError)."""
    @property
    def max_key_size(self) -> Optional[int]:
        """Largest serialized key in bytes; ``None``: no limit."""
    @property
    def max_value_size(self) -> Optional[int]:
        """Largest serialized value in bytes; ``None``: no limit."""
    @property
    def closed(self) -> bool: ...

def unlink(name: str) -> None:
    """Removes the shared-memory segment ``name`` without attaching to it.

    For a map whose creator died before initialising it, or that no process needs any more;
    processes that have it open keep using it. Without the segment, removes the heap
    (``name.heap``) and tables (``name.t<g>``) a process killed after unlinking it left. ``FileNotFoundError`` if
    nothing of that name exists.
    """
