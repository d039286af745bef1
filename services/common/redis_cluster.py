"""Redis Cluster support: the client, its pipelines, and the socket.io manager's
channel as a sharded pub/sub channel.

A cluster is named by a ``redis+cluster://`` URL (``rediss+cluster://`` for TLS)
listing one or more startup nodes, ``redis+cluster://[user:pass@]h1:p1,h2:p2/0``,
or by ``QUIZ_REDIS_CLUSTER=1`` with a plain ``redis://`` URL of any node or of a
managed cluster's configuration endpoint. The client learns every slot's owner
from any node and follows MOVED/ASK and failovers itself.

Every key of one session carries the hash tag ``{s:<id>}`` (services.common.redis),
so each pipeline, MULTI and script of one session runs on one slot; pipelines that
touch several sessions are split by node by the client. Keys without a tag
(``quizrt:alive`` and the restore locks) are single-key commands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import socketio
from redis.asyncio import Redis
from redis.asyncio.cluster import (
    AbstractStrategy,
    ClusterNode,
    ClusterPipeline,
    RedisCluster,
    TransactionStrategy,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

log = logging.getLogger("quizrt.redis")

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# How often a socket.io subscriber checks that its node is still the channel's primary.
CHECK_OWNER_S = 2.0


def is_cluster_url(url: str, flag: bool = False) -> bool:
    """Whether ``url`` (or the QUIZ_REDIS_CLUSTER flag) names a Redis Cluster."""
    return flag or url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """(startup nodes, connection options) of a cluster URL; ``redis://host:port``
    (with QUIZ_REDIS_CLUSTER=1) works too. The database number is ignored: a
    cluster has only database 0."""
    scheme, _, rest = url.partition("://")
    opts: dict[str, Any] = {}
    if scheme.lower().startswith("rediss"):
        opts["ssl"] = True
    hosts = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" in hosts:
        userinfo, hosts = hosts.rsplit("@", 1)
        user, sep, password = userinfo.partition(":")
        if sep:
            opts["username"] = unquote(user) or None
            opts["password"] = unquote(password)
        else:
            opts["password"] = unquote(user)
    nodes = []
    for h in hosts.split(","):
        host, sep, port = h.strip().rpartition(":")
        if not sep:  # no port given
            host, port = port, ""
        nodes.append((host or "127.0.0.1", int(port or 6379)))
    return nodes, opts


def node_url(url: str) -> str:
    """A plain ``redis://`` URL of the first node of a cluster URL (``url`` itself
    otherwise), for tools that need one server, e.g. the bench's bare python-socketio
    floor: plain PUBLISH/SUBSCRIBE work on any node of a cluster."""
    if not is_cluster_url(url):
        return url
    scheme, _, rest = url.partition("://")
    hosts = rest.split("/", 1)[0]
    auth, _, hosts = hosts.rpartition("@")
    first = hosts.split(",")[0]
    return f"{scheme.split('+')[0]}://{auth + '@' if auth else ''}{first}/0"


class _TransactionStrategy(TransactionStrategy):
    """redis-py 8.1 queues each command of a cluster MULTI by running a coroutine in
    a new event loop in a thread (``asyncio.run``); when that coroutine is the
    client's first contact with the cluster, the client reads the slot map there and
    keeps connections bound to that dead loop, and the next MULTI on them fails
    ("attached to a different loop"). A queued command's slot is a pure function
    of its key, so it is computed here without any I/O; commands after WATCH (run
    at once) still take redis-py's path, on a client ``_Pipeline.watch`` initialised.
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        name = args[0]
        if (
            self._watching
            or name in self.IMMEDIATE_EXECUTE_COMMANDS
            or name in self.NO_SLOTS_COMMANDS
            or len(args) < 2
        ):
            return super().execute_command(*args, **kwargs)
        self._pipeline_slots.add(self._pipe.cluster_client.keyslot(args[1]))
        return AbstractStrategy.execute_command(self, *args, **kwargs)


class _Pipeline(ClusterPipeline):
    def __init__(self, client: RedisCluster, transaction: bool | None = None) -> None:
        super().__init__(client, transaction)
        if transaction:
            self._execution_strategy = _TransactionStrategy(self)

    async def _ready(self) -> None:
        if self.cluster_client._initialize:
            await self.cluster_client.initialize()

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        await self._ready()
        return await super().execute(raise_on_error, allow_redirections)

    async def watch(self, *names: Any) -> None:  # type: ignore[override]
        await self._ready()
        await super().watch(*names)


class QuizRedisCluster(RedisCluster):
    """RedisCluster whose pipelines work for this stack. (Scripts go as EVAL with
    their body: a replica that took over has no script cache of the old primary.)"""

    def pipeline(  # type: ignore[override]
        self, transaction: Any = None, shard_hint: Any = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        return _Pipeline(self, transaction)  # type: ignore[abstract]


def cluster_client(url: str, **kwargs: Any) -> QuizRedisCluster:
    """A cluster client for ``url``; ``kwargs`` go to RedisCluster (timeouts...)."""
    nodes, opts = parse_cluster_url(url)
    opts.update(kwargs)
    opts.setdefault("retry", Retry(ExponentialBackoff(cap=0.5, base=0.05), 6))
    return QuizRedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in nodes],
        # One shard failing over must not stop the others.
        require_full_coverage=False,
        **opts,
    )


class ShardedRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager on a Redis Cluster, with the channel as a
    sharded pub/sub channel (SPUBLISH/SSUBSCRIBE, Redis 7+).

    python-socketio's own manager opens a plain client on the URL, which a cluster
    does not serve (and a plain PUBLISH on a cluster is copied to every node). Here
    events are published with SPUBLISH through the cluster client (which follows the
    channel's slot to its primary, also after a failover) and every socket.io
    process subscribes with SSUBSCRIBE on the primary owning the channel's slot;
    when that primary fails or moves the slot, the listener re-reads the slot map
    and subscribes on the new owner. As with one Redis, events published while no
    subscriber is connected are not delivered (socket.io events are at most once;
    clients catch up from the next leaderboard snapshot or their join ack).
    """

    name = "redis-cluster"
    redis: Any

    def _redis_connect(self) -> None:
        if self.redis is None:
            self.redis = cluster_client(self.redis_url, **self.redis_options)
        self.connected = True

    async def _publish(self, data: Any) -> Any:  # pragma: no cover - needs a cluster
        if not self.connected:
            self._redis_connect()
        try:
            return await self.redis.spublish(self.channel, self.json.dumps(data))
        except Exception as exc:
            self._get_logger().error("Cannot publish to the redis cluster: %s", exc)
            return None

    async def _subscriber(self) -> tuple[Redis, Any]:
        """A plain client and a pub/sub connection, subscribed, on the primary that
        owns the channel's slot. No retries inside: a lost connection must come back
        here, to the slot map, not reconnect to the same address (which may be a
        restarted node that is a replica now)."""
        cluster: RedisCluster = self.redis
        await cluster.initialize()
        node = cluster.get_node_from_key(self.channel)
        if node is None:
            raise ConnectionError(f"no node serves the slot of channel {self.channel}")
        kwargs = {
            k: v
            for k, v in node.connection_kwargs.items()
            if k in ("username", "password", "ssl", "ssl_cert_reqs", "ssl_ca_certs")
        }
        conn = Redis(
            host=node.host,
            port=int(node.port),
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),
            **kwargs,
        )
        pubsub = conn.pubsub()
        await pubsub.ssubscribe(self.channel)
        return conn, pubsub

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:  # pragma: no cover - cluster
        self._redis_connect()
        loop = asyncio.get_running_loop()
        while True:
            conn = pubsub = None
            try:
                conn, pubsub = await self._subscriber()
                checked = loop.time()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    kind = message and message.get("type")
                    if kind in ("sunsubscribe", b"sunsubscribe"):
                        break  # the node gave the slot away (resharding): resubscribe
                    if kind in ("smessage", b"smessage"):
                        yield message
                    if loop.time() - checked >= CHECK_OWNER_S:
                        # A primary that was failed over may not tell its subscribers:
                        # make sure ours still is one.
                        checked = loop.time()
                        role = await conn.execute_command("ROLE")
                        if role[0] not in (b"master", "master"):
                            raise ConnectionError("the subscribed node is a replica now")
            except Exception as exc:
                self._get_logger().error("redis cluster subscriber: %s; resubscribing", exc)
                await asyncio.sleep(0.3)
                try:
                    # Re-read which node owns the slot now.
                    await self.redis.nodes_manager.initialize()
                except Exception:
                    pass
            finally:
                for closing in (pubsub, conn):
                    if closing is not None:
                        try:
                            await closing.aclose()
                        except Exception:
                            pass

    async def _listen(self) -> AsyncIterator[Any]:  # pragma: no cover - needs a cluster
        channel = self.channel.encode("utf-8")
        async for message in self._redis_listen_with_retries():
            if (
                message["channel"] == channel
                and message["type"] in ("smessage", "message")
                and "data" in message
            ):
                yield message["data"]
