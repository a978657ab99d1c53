"""The tail objects this process stored, kept in memory for the request that fills their part.

A client sending 1 MiB PATCHes into 8 MiB parts makes seven tail objects per part (see
`s3_appender.py`); the eighth request reads them all back to send the part. When that request
comes to the process that stored them (the usual case: one client, one connection), the bytes
are still here, and the seven GETs are not needed. A tail object is never rewritten (each has a
fresh name), so a cached copy is the object's bytes for as long as the name is in use; it is
checked against the saved size and CRC32 all the same. Another process, or an evicted entry,
reads from S3 as before: the cache only saves requests, it never holds the only copy.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

# At most this many bytes of tails per process: two clients' worth of 1 MiB PATCHes into
# 8 MiB parts. The oldest entries go first. Beside the buffer budget, which bounds the bytes
# requests hold while they send, not those kept between requests: kept small for that reason
# (8 uploads of 1 MiB PATCHes grew RSS by 79 MiB without the cache, 84 MiB with 32 MiB of it).
TAIL_CACHE_BYTES = 16 * 1024 * 1024


class TailCache:
    """Bytes of tail objects by key, least recently stored first out, bounded in size."""

    def __init__(self, max_bytes: int = TAIL_CACHE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._held = 0
        self._entries: collections.OrderedDict[str, bytes] = collections.OrderedDict()

    @property
    def held(self) -> int:
        """Bytes held now."""
        return self._held

    def put(self, key: str, body: bytes) -> None:
        """Keep `body` as the bytes of `key`, making room by forgetting the oldest entries."""
        if len(body) > self._max_bytes:
            return
        self.discard((key,))
        while self._held + len(body) > self._max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._held -= len(oldest)
        self._entries[key] = body
        self._held += len(body)

    def get(self, key: str) -> bytes | None:
        """The bytes of `key` when this process stored them and still has them."""
        return self._entries.get(key)

    def discard(self, keys: Iterable[str]) -> None:
        """Forget these keys (absorbed into a part, or deleted)."""
        for key in keys:
            body = self._entries.pop(key, None)
            if body is not None:
                self._held -= len(body)
