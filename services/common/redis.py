"""The Redis client of a process and the names of every key the stack uses.

Keys of one session share the hash tag ``{s:<id>}`` so they stay together on a
Redis cluster. Everything here can be rebuilt from PostgreSQL.
"""

from __future__ import annotations

from typing import Any, cast

import socketio
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common import redis_cluster
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
    if _client is None and is_cluster():
        # Same command API as Redis; see services.common.redis_cluster.
        _client = cast(
            Redis,
            redis_cluster.cluster_client(
                get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2
            ),
        )
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


def is_cluster() -> bool:
    """Whether this stack's Redis is a Redis Cluster (``redis+cluster://`` or
    ``QUIZ_REDIS_CLUSTER=1``)."""
    s = get_settings()
    return redis_cluster.is_cluster_url(s.redis_url, s.redis_cluster)


def redis_from_url(url: str, **kwargs: Any) -> Redis:
    """A new client of ``url`` (a cluster client for a cluster URL), for tools and
    tests that talk to a Redis other than the process-wide one."""
    if redis_cluster.is_cluster_url(url, get_settings().redis_cluster):
        return cast(Redis, redis_cluster.cluster_client(url, **kwargs))
    return Redis.from_url(url, **kwargs)


def sio_manager(**kwargs: Any) -> socketio.AsyncRedisManager:
    """The socket.io client manager on this stack's Redis and channel; on a cluster
    the channel is a sharded pub/sub channel (redis_cluster.ShardedRedisManager).
    ``kwargs`` go to the manager (``write_only``, ``json``...)."""
    s = get_settings()
    cls = redis_cluster.ShardedRedisManager if is_cluster() else socketio.AsyncRedisManager
    return cls(s.redis_url, channel=s.sio_channel, **kwargs)


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
    """Sorted set: member user id, score = composite (see services.board.ranking)."""
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


def as_text(v: bytes | str) -> str:
    """A reply as text, whether or not the client decodes responses."""
    return v.decode() if isinstance(v, bytes) else v
