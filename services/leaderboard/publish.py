"""From a set of changed sessions to TOP_10 records and `leaderboard` room events.

One atomic Redis read per session (all sessions in one round trip), one TOP_10
record per session (all in one Kafka round trip), one room event per session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import msgspec
from redis.asyncio import Redis

from contracts import LeaderboardSnapshot, RoomLeaderboard, Top10
from services.common.kafka import EventProducer
from services.common.ranking import now_ms, read_snapshots
from services.common.rooms import RoomEmitter
from services.leaderboard.rebuild import rebuild_board

log = logging.getLogger("quizrt.leaderboard.publish")

TOP_N = 10
# The dedupe cache only saves work; it is never needed for correctness.
_CACHE_MAX = 100_000


class SnapshotPublisher:
    """Publishes the current top 10 of sessions; skips snapshots already sent."""

    def __init__(
        self, redis: Redis, producer: EventProducer, emitter: RoomEmitter, topic_top10: str
    ):
        self.redis = redis
        self.producer = producer
        self.emitter = emitter
        self.topic_top10 = topic_top10
        self._last_sent: dict[str, int] = {}
        self.broadcasts = 0
        self.last_deliveries = 0  # room deliveries caused by the last publish()

    async def publish(self, session_ids: Iterable[str]) -> int:
        """Read, publish and emit the snapshot of each session; returns how many were sent.

        Raises on Redis, PostgreSQL or Kafka errors (the caller retries the batch and
        does not commit). A board missing in Redis is rebuilt from PostgreSQL first;
        a session PostgreSQL does not know is skipped.
        """
        self.last_deliveries = 0
        ids = list(dict.fromkeys(session_ids))
        if not ids:
            return 0
        snaps = await read_snapshots(self.redis, ids, TOP_N)
        missing = [sid for sid, snap in snaps.items() if snap is None]
        rebuilt = [sid for sid in missing if await rebuild_board(self.redis, sid)]
        if rebuilt:
            snaps.update(await read_snapshots(self.redis, rebuilt, TOP_N))
        for sid in missing:
            if sid not in rebuilt:
                log.warning("SCORE_CHANGE for unknown session %s: skipped", sid)
        fresh = [
            snap
            for snap in snaps.values()
            if snap is not None and snap.version > self._last_sent.get(snap.session_id, 0)
        ]
        if not fresh:
            return 0
        await self._send(fresh)
        # Room deliveries this call caused, for the consumer's pacing.
        self.last_deliveries = sum(snap.players for snap in fresh)
        if len(self._last_sent) > _CACHE_MAX:
            self._last_sent.clear()
        for snap in fresh:
            self._last_sent[snap.session_id] = snap.version
        self.broadcasts += len(fresh)
        return len(fresh)

    async def _send(self, snaps: list[LeaderboardSnapshot]) -> None:
        produced = now_ms()
        records = [
            (
                s.session_id,
                msgspec.json.encode(
                    Top10(
                        session_id=s.session_id,
                        version=s.version,
                        players=s.players,
                        entries=s.entries,
                        produced_ms=produced,
                    )
                ),
            )
            for s in snaps
        ]
        # TOP_10 and the room events go out together: neither waits for the other.
        await asyncio.gather(
            self.producer.send_many(self.topic_top10, records),
            *(
                self.emitter.emit(
                    "leaderboard",
                    RoomLeaderboard(
                        session_id=s.session_id,
                        version=s.version,
                        players=s.players,
                        entries=s.entries,
                    ),
                    s.session_id,
                )
                for s in snaps
            ),
        )
