"""One session's snapshot: read from Redis, then out as a room event and a TOP_10 record.

``read`` is one atomic Redis read (a board missing in Redis is rebuilt from
PostgreSQL first); ``send`` emits the `leaderboard` room event and produces the
TOP_10 record together (neither waits for the other), stamping the hop trace.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
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


class SnapshotPublisher:
    def __init__(
        self, redis: Redis, producer: EventProducer, emitter: RoomEmitter, topic_top10: str
    ):
        self.redis = redis
        self.producer = producer
        self.emitter = emitter
        self.topic_top10 = topic_top10

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
            self.producer.send_many(
                self.topic_top10, [(snap.session_id, msgspec.json.encode(record))]
            ),
        )
