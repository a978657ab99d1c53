"""Per-user rate limits with the `limits` library, in memory or in Redis shared by all workers.

A limit that cannot be checked is not enforced: when Redis is unreachable the service keeps
serving (fail open) and logs it, because an outage of the limiter must not become an outage of
uploads. After a failure Redis is left alone for a few seconds, so a hanging Redis costs one
timeout per pause rather than one per request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import redis.asyncio
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSlidingWindow
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from upload_service.config import Settings
from upload_service.edge.sliding_window import SlidingWindowCounters

logger = logging.getLogger("upload_service.rate_limits")

LimitKind = Literal["upload", "query"]
REDIS_TIMEOUT_S = 0.5
PAUSE_AFTER_FAILURE_S = 3.0
_STORAGE_ERRORS = (redis.RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class RateLimitOutcome:
    """One request counted against a limit: whether it may pass, and the figures to publish."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float

    @property
    def retry_after_s(self) -> int:
        """Whole seconds until the window lets one more request through."""
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> list[tuple[bytes, bytes]]:
        """`X-RateLimit-*` headers; `Reset` is the Unix time at which the window frees a slot."""
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(max(0, self.remaining)).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset_at)).encode()),
        ]


class RateLimits:
    """The upload and query budgets of each user, counted in one shared storage."""

    def __init__(self, settings: Settings) -> None:
        self._items: dict[LimitKind, RateLimitItem] = {
            "upload": parse(settings.upload_rate_limit),
            "query": parse(settings.query_rate_limit),
        }
        self._redis: redis.asyncio.Redis | None = None
        self._storage: RedisStorage | None = None
        # A sliding-window counter: two counters per user and window, O(1) in memory and Redis.
        # A moving window keeps one entry per request (a 1000/minute limit is 1000 Redis list
        # items per user), and its in-memory storage expires them through a thread hop per hit.
        self._counters: SlidingWindowCounters | None = None
        self._async_limiter: AsyncSlidingWindow | None = None
        url = settings.rate_limit_storage_url
        if url.startswith("memory://"):
            # Per process: with several workers each has its own budget (use Redis to share).
            self._counters = SlidingWindowCounters()
        else:
            # Our own pool: bounded timeouts and no retries (redis-py retries with backoff by
            # default, which would stall every request while Redis is down), closed by us.
            pool = redis.asyncio.ConnectionPool.from_url(
                url,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
            self._redis = redis.asyncio.Redis(connection_pool=pool)
            self._storage = RedisStorage(
                f"async+{url}",
                implementation="redispy",
                key_prefix=settings.rate_limit_key_prefix,
                connection_pool=pool,  # type: ignore[arg-type]  # passed through to redis-py
            )
            self._async_limiter = AsyncSlidingWindow(self._storage)
        self._paused_until = 0.0

    @property
    def uses_redis(self) -> bool:
        """Whether the counters live in Redis (and readiness should check it)."""
        return self._redis is not None

    async def hit(self, kind: LimitKind, user: str) -> RateLimitOutcome | None:
        """Count one request of `user`; None when the storage cannot be reached (fail open)."""
        if time.monotonic() < self._paused_until:
            return None
        item = self._items[kind]
        # Quoted, so no `sub` can reach into another user's key.
        identifiers = (kind, quote(user, safe=""))
        if self._counters is not None:
            counted = self._counters.hit("/".join(identifiers), item.amount, item.get_expiry())
            return RateLimitOutcome(
                counted.allowed, item.amount, counted.remaining, counted.reset_at
            )
        assert self._async_limiter is not None
        try:
            allowed = await self._async_limiter.hit(item, *identifiers)
            stats = await self._async_limiter.get_window_stats(item, *identifiers)
        except _STORAGE_ERRORS as exc:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
            logger.warning(
                "rate limit storage unreachable (%s); serving without limits for %gs",
                type(exc).__name__,
                PAUSE_AFTER_FAILURE_S,
            )
            return None
        return RateLimitOutcome(
            allowed=allowed, limit=item.amount, remaining=stats.remaining, reset_at=stats.reset_time
        )

    async def check(self) -> None:
        """Readiness: PING Redis, raising when it does not answer."""
        if self._storage is not None and not await self._storage.check():
            raise ConnectionError("Redis did not answer PING")

    async def aclose(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            await self._redis.connection_pool.disconnect()
            await self._redis.aclose()
