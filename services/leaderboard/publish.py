"""One session's snapshot: read from Redis, then out as a room event and a TOP_10 record.

``read`` is one atomic Redis read (a board missing in Redis is rebuilt from
PostgreSQL first); ``send`` emits the `leaderboard` room event and produces the
TOP_10 record together (neither waits for the other), stamping the hop trace. The
TOP_10 records of all sessions go out together (``LingeringSend``): the ones sent
within ``settings.leaderboard_top10_linger_ms`` are one produce request, not one per
session, and each ``send`` still returns only once Kafka has its record. A producer
that an outage left unusable for good (``OutOfOrderSequenceNumber``) is replaced
before the next request; without that, every TOP_10 send failed from then on.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiokafka.errors import OutOfOrderSequenceNumber, ProducerFenced
from redis.asyncio import Redis

from contracts import HopTrace, LeaderboardSnapshot, RoomLeaderboard, Top10
from services.board.ranking import read_snapshot
from services.board.rebuild import rebuild_board
from services.common import metrics
from services.common.clock import now_ms
from services.common.kafka import EventProducer
from services.common.rooms import RoomEmitter

log = logging.getLogger("quizrt.leaderboard.publish")

TOP_N = 10
FATAL_FOR_PRODUCER = (OutOfOrderSequenceNumber, ProducerFenced)


class LingeringSend:
    """Records of one topic sent within ``linger_s`` of the first go to Kafka together
    (one ``send_many``); each ``send`` returns once Kafka acknowledged its record and
    raises when it did not."""

    def __init__(self, producer: EventProducer, topic: str, linger_s: float):
        self.producer = producer
        self.topic = topic
        self.linger_s = linger_s
        self._pending: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._flush: asyncio.Task[None] | None = None
        self._broken = False  # the producer refuses every send: renew it first
        self.requests = 0
        self.renewals = 0

    async def send(self, key: str, value: bytes) -> None:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((key, value, done))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._send_soon())
        await done

    async def _send_soon(self) -> None:
        # Records sent while a request is in flight wait for it (no new task starts
        # while this one runs), so they go in the next request of this loop.
        while self._pending:
            await asyncio.sleep(self.linger_s)
            batch, self._pending = self._pending, []
            self.requests += 1
            error: Exception | None = None
            try:
                if self._broken:
                    await self.producer.renew()
                    self._broken = False
                    self.renewals += 1
                await self.producer.send_many(self.topic, [(k, v) for k, v, _ in batch])
            except Exception as e:
                error = e
                if isinstance(e, FATAL_FOR_PRODUCER):
                    # The senders retry; their next request goes out on a new producer.
                    log.warning("%s producer unusable (%r): starting a new one", self.topic, e)
                    self._broken = True
            for _, _, done in batch:
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)


class SnapshotPublisher:
    def __init__(
        self,
        redis: Redis,
        producer: EventProducer,
        emitter: RoomEmitter,
        topic_top10: str,
        linger_s: float = 0.0,
    ):
        self.redis = redis
        self.emitter = emitter
        self.top10 = LingeringSend(producer, topic_top10, linger_s)

    async def read(self, session_id: str) -> LeaderboardSnapshot | None:
        """The session's current top 10; None for a session PostgreSQL does not know.

        Raises on Redis or PostgreSQL errors (the caller retries).
        """
        snap = await read_snapshot(self.redis, session_id, TOP_N)
        if snap is None:
            if not await rebuild_board(self.redis, session_id):
                log.warning("SCORE_CHANGE for unknown session %s: skipped", session_id)
                return None
            snap = await read_snapshot(self.redis, session_id, TOP_N)
        return snap

    async def send(self, snap: LeaderboardSnapshot, trace: HopTrace | None = None) -> None:
        """Emit the room event and produce TOP_10; raises when Kafka did not acknowledge."""
        emitted = now_ms()
        if trace is not None:
            trace = msgspec.structs.replace(trace, emitted_ms=emitted)
            metrics.observe_ms("read_emit", trace.read_ms, emitted)
            metrics.observe_ms("arrive_emit", trace.arrived_ms, emitted)
        event = RoomLeaderboard(
            session_id=snap.session_id,
            version=snap.version,
            players=snap.players,
            entries=snap.entries,
            trace=trace,
        )
        record = Top10(
            session_id=snap.session_id,
            version=snap.version,
            players=snap.players,
            entries=snap.entries,
            produced_ms=emitted,
        )
        await asyncio.gather(
            self.emitter.emit("leaderboard", event, snap.session_id),
            self.top10.send(snap.session_id, msgspec.json.encode(record)),
        )
