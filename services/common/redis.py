"""The Redis client of a process and the names of every key the stack uses.

Keys of one session share the hash tag ``{s:<id>}`` so they stay together on a
Redis cluster. Everything here can be rebuilt from PostgreSQL.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.settings import get_settings

_client: Redis | None = None
POOL_SIZE = 64
POOL_WAIT_S = 5.0


def get_redis() -> Redis:
    """The process-wide client (a connection pool inside).

    The pool waits for a free connection (bounded by ``POOL_WAIT_S``) instead of
    raising ``MaxConnectionsError`` when every connection is busy: a join storm or an
    answer burst queues for a few ms rather than failing. Redis is single-threaded, so
    a few dozen connections per process are plenty; more would only queue there.
    """
    global _client
    if _client is None:
        pool = BlockingConnectionPool.from_url(
            get_settings().redis_url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_S,
            socket_timeout=2,
            socket_connect_timeout=2,
            health_check_interval=10,
            # from_url's default is no retry: after a Redis restart every pooled
            # connection failed its next command (a 500). Retry on a fresh connection.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        _client = Redis(connection_pool=pool)
    return _client


async def close_redis() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None


async def ping() -> bool:
    try:
        return bool(await get_redis().ping())
    except Exception:
        return False


# Set by whoever (re)builds Redis from PostgreSQL; missing means Redis lost its data.
ALIVE_KEY = "quizrt:alive"


def board_key(session_id: str) -> str:
    """Sorted set: member user id, score = composite (see services.common.ranking)."""
    return f"lb:{{s:{session_id}}}"


def board_version_key(session_id: str) -> str:
    """Counter that grows with every change of the board (snapshot version)."""
    return f"lb:{{s:{session_id}}}:ver"


def board_names_key(session_id: str) -> str:
    """Hash user id -> nickname of every player of the session."""
    return f"lb:{{s:{session_id}}}:names"


def session_key(session_id: str) -> str:
    """Hash of the session's shared state (mode, state, host, question index, deadline)."""
    return f"sess:{{s:{session_id}}}"
