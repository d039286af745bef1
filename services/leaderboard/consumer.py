"""Leaderboard consumer: SCORE_CHANGE -> Redis top 10 -> TOP_10 + room events.

    python -m services.leaderboard.consumer

One member of the consumer group ``settings.consumer_group``. Each loop takes
whatever SCORE_CHANGE records are there now (``getmany``: no fixed delay, and a
burst arrives as one batch), groups them by session, publishes one snapshot per
touched session (``publish.SnapshotPublisher``) and only then commits the
offsets: at-least-once, and every write is idempotent, so a crash re-sends at
most a fresh snapshot. A failed batch is retried from the same records after a
short backoff and never committed half-done. Beside the loop, a watcher keeps
Redis whole (``rebuild``): dirty boards and a Redis that lost its data are
rebuilt from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

import msgspec
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from contracts import decode_score_change
from services.common import db, metrics
from services.common.kafka import EventProducer, make_consumer
from services.common.logs import setup_logging
from services.common.redis import close_redis, get_redis
from services.common.rooms import get_emitter
from services.common.settings import get_settings
from services.leaderboard.publish import SnapshotPublisher
from services.leaderboard.rebuild import (
    parse_session_id,
    rebuild_dirty_boards,
    rebuild_if_redis_lost,
)

log = logging.getLogger("quizrt.leaderboard.consumer")

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
WATCH_INTERVAL_S = 1.0


class _Assignment(ConsumerRebalanceListener):
    """Sets ``joined`` once the group has given this member its partitions."""

    def __init__(self) -> None:
        self.joined = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))
        self.joined.set()


def sessions_of(records: list) -> set[str]:
    """Session ids named by a batch of SCORE_CHANGE records; malformed ones are logged
    and skipped (a bad record must never stop the loop)."""
    sessions: set[str] = set()
    for rec in records:
        try:
            event = decode_score_change(rec.value)
        except (msgspec.DecodeError, TypeError) as e:
            log.warning(
                "skipping malformed SCORE_CHANGE at %s/%s: %s", rec.partition, rec.offset, e
            )
            continue
        if parse_session_id(event.session_id) is None:
            log.warning(
                "skipping SCORE_CHANGE with bad session id at %s/%s", rec.partition, rec.offset
            )
            continue
        sessions.add(event.session_id)
    return sessions


class LeaderboardConsumer:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.stopping = asyncio.Event()
        self.producer = EventProducer()
        self.publisher: SnapshotPublisher | None = None
        # Static membership: a restarted process takes its partitions back at once
        # instead of waiting for the group to time the old member out.
        name = os.environ.get("QUIZ_PROCESS_NAME")
        self.consumer = make_consumer(
            group=self.settings.consumer_group,
            group_instance_id=f"{self.settings.instance}{name}" if name else None,
        )
        self.assignment = _Assignment()

    async def run(self) -> None:
        log.info("starting")
        metrics.serve()
        await db.open_pool()
        await self.producer.start()
        self.publisher = SnapshotPublisher(
            get_redis(), self.producer, get_emitter(), self.settings.topic_top10
        )
        self.consumer.subscribe([self.settings.topic_score_change], listener=self.assignment)
        await self.consumer.start()
        log.info("joining group %s", self.settings.consumer_group)
        watcher = asyncio.create_task(self._watch_redis())
        try:
            loop = asyncio.create_task(self._loop())
            try:
                await asyncio.wait_for(self.assignment.joined.wait(), 30)
            except TimeoutError:
                log.warning("no partitions assigned after 30 s; consuming when they are")
            log.info(
                "consumer ready (group %s, topic %s)",
                self.settings.consumer_group,
                self.settings.topic_score_change,
            )
            await loop
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.consumer.stop()
            await self.producer.stop()
            await close_redis()
            await db.close_pool()
            log.info("consumer stopped")

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=500)
            except KafkaError as e:
                log.warning("fetch failed (%s); retrying", e)
                await asyncio.sleep(BACKOFF_MAX_S)
                continue
            if not batch:
                continue
            started = time.monotonic()
            records = [r for recs in batch.values() for r in recs]
            offsets = {tp: recs[-1].offset + 1 for tp, recs in batch.items()}
            if not await self._publish_until_done(sessions_of(records)):
                return  # stopping: leave the batch uncommitted for the next owner
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as e:
                # A rebalance took the partitions: their new owner redoes the batch.
                log.warning("commit failed (%s); the batch will be redelivered", e)
            await self._pace(started)

    async def _pace(self, started: float) -> None:
        """Keep room deliveries near the budget (settings.leaderboard_deliveries_per_s).

        A broadcast to a room of N players costs N deliveries in the socket.io tier.
        Past its capacity events queue there and every client lags, so after a batch
        that caused D deliveries the next fetch waits until D / budget seconds have
        passed: answers arriving meanwhile are coalesced into the next snapshot. Small
        rooms are not slowed (30 players: under 10 ms); a stadium of 1,000 gets about
        four snapshots a second instead of one per answer batch.
        """
        assert self.publisher is not None
        budget = max(self.settings.leaderboard_deliveries_per_s, 1)
        wait = self.publisher.last_deliveries / budget - (time.monotonic() - started)
        if wait > 0.001:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), min(wait, 1.0))

    async def _publish_until_done(self, sessions: set[str]) -> bool:
        """Publish the batch, retrying with backoff; False when asked to stop first."""
        assert self.publisher is not None
        backoff = BACKOFF_MIN_S
        while True:
            try:
                await self.publisher.publish(sessions)
                return True
            except Exception as e:
                log.warning(
                    "publishing %d sessions failed (%s: %s); retrying in %.1fs",
                    len(sessions),
                    type(e).__name__,
                    e,
                    backoff,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            if self.stopping.is_set():
                return False
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _watch_redis(self) -> None:
        """Every second: rebuild boards that are dirty or lost, and publish them."""
        assert self.publisher is not None
        redis = get_redis()
        while True:
            try:
                rebuilt = await rebuild_if_redis_lost(redis)
                rebuilt += await rebuild_dirty_boards(redis)
                if rebuilt:
                    await self.publisher.publish(rebuilt)
            except Exception as e:
                log.warning("keeping Redis whole failed (%s: %s); retrying", type(e).__name__, e)
            await asyncio.sleep(WATCH_INTERVAL_S)


async def main() -> None:
    setup_logging()
    consumer = LeaderboardConsumer()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stopping.set)
    await consumer.run()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
