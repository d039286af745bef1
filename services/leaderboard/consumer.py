"""Leaderboard consumer: SCORE_CHANGE -> Redis top 10 -> TOP_10 + room events.

    python -m services.leaderboard.consumer

One member of the consumer group ``settings.consumer_group``. The loop takes
whatever SCORE_CHANGE records are there now (``getmany``: no fixed delay) and marks
each session they touch as changed; ``ticks.SessionTicks`` then sends every changed
session its newest snapshot at most once per tick, each session on its own
(``publish.SnapshotPublisher``: one Redis read, one room event, one TOP_10 record).
Offsets are committed only once every session of a batch has published a snapshot
read after the batch arrived (``ticks.OffsetLedger``), and at most once every
``settings.leaderboard_commit_interval_ms`` (each commit is a write to the broker's
offsets log): at-least-once, and every write is idempotent, so a crash re-reads at
most that much more and re-sends at most a fresh snapshot. Failed publishes
are retried per session with backoff. Beside the loop, a watcher keeps Redis whole
(``rebuild``): dirty boards and a Redis that lost its data are rebuilt from
PostgreSQL and their sessions marked changed.

A commit that Kafka does not answer is given up after ``COMMIT_TIMEOUT_S`` (a later
one covers it); a Kafka client whose commits keep timing out, or that stopped
fetching (``liveness.FetchWatch``), is replaced by a new member of the group
(SIGUSR1 asks for that at once).

Each snapshot carries the hop trace of the newest answer behind it
(``contracts.HopTrace``: arrived, committed, produced from SCORE_CHANGE; acked from
the record's broker append time; read; emitted), and the consumer's hops go to its
Prometheus histograms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import TypedDict

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from contracts import HopTrace, decode_score_change
from services.board.rebuild import (
    parse_session_id,
    rebuild_dirty_boards,
    rebuild_if_redis_lost,
)
from services.common import db, metrics
from services.common.clock import now_ms
from services.common.kafka import EventProducer, make_consumer
from services.common.logs import setup_logging
from services.common.redis import close_redis, get_redis
from services.common.rooms import get_emitter
from services.common.settings import Settings, get_settings
from services.leaderboard.liveness import FetchWatch
from services.leaderboard.publish import SnapshotPublisher
from services.leaderboard.ticks import Change, OffsetLedger, SessionTicks

log = logging.getLogger("quizrt.leaderboard.consumer")

BACKOFF_MAX_S = 2.0
WATCH_INTERVAL_S = 1.0
COMMIT_TIMEOUT_S = 10.0  # a commit to a coordinator that never answers is given up
MAX_COMMIT_TIMEOUTS = 2  # ... and after this many in a row, the client is replaced
PROBE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 10.0


class _Assignment(ConsumerRebalanceListener):
    """Sets ``joined`` once the group has given this member its partitions."""

    def __init__(self) -> None:
        self.joined = asyncio.Event()
        self.assigned: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.assigned = set()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))
        self.assigned = set(assigned)
        self.joined.set()


LOG_APPEND_TIME = 1  # aiokafka's timestamp_type of a broker-stamped record
MAX_OUTSTANDING_BATCHES = 500  # stop fetching while this many await their snapshots


def newest_traces(records: list, read_ms: int) -> dict[str, tuple[HopTrace, Change]]:
    """The hop trace of each session's newest answer in a batch of SCORE_CHANGE records,
    and what the batch's answers did to the session's top 10 (``Change``, by rank).

    Malformed records are logged and skipped (a bad record must never stop the loop).
    """
    out: dict[str, tuple[HopTrace, Change]] = {}
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
        acked = rec.timestamp if rec.timestamp_type == LOG_APPEND_TIME else 0
        metrics.observe_ms("ack_read", acked or event.produced_ms, read_ms)
        change = Change.of(event.rank)
        seen = out.get(event.session_id)
        if seen is not None:
            change |= seen[1]
            if event.answered_ms < seen[0].arrived_ms:  # an older answer: the trace stays
                out[event.session_id] = (seen[0], change)
                continue
        trace = HopTrace(
            arrived_ms=event.answered_ms,
            committed_ms=event.committed_ms,
            produced_ms=event.produced_ms,
            acked_ms=acked,
            read_ms=read_ms,
        )
        out[event.session_id] = (trace, change)
    return out


class TickOptions(TypedDict):
    tick_s: float
    hold_s: float
    deliveries_per_s: float


def tick_options(settings: Settings) -> TickOptions:
    """``SessionTicks``' timing from the settings: the tick, the longest hold of an
    unchanged top 10 (whole ticks) and the overload guard."""
    tick_s = max(settings.leaderboard_tick_ms, 1) / 1000
    return TickOptions(
        tick_s=tick_s,
        hold_s=max(settings.leaderboard_hold_ticks, 1) * tick_s,
        deliveries_per_s=settings.leaderboard_deliveries_per_s,
    )


class LeaderboardConsumer:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.stopping = asyncio.Event()
        self.producer = EventProducer()
        self.publisher: SnapshotPublisher | None = None
        self.ticks: SessionTicks | None = None
        self.ledger = OffsetLedger()
        self.seq = 0
        self.renew_requested = ""  # SIGUSR1: replace the Kafka client now (operators, tests)
        self.commit_interval_s = max(self.settings.leaderboard_commit_interval_ms, 0) / 1000
        self._committed_at = float("-inf")
        self._commit_timeouts = 0
        self.watch = FetchWatch()
        self.consumer, self.assignment = self._new_consumer()

    def _new_consumer(self) -> tuple[AIOKafkaConsumer, _Assignment]:
        # Static membership: a restarted process takes its partitions back at once
        # instead of waiting for the group to time the old member out.
        name = os.environ.get("QUIZ_PROCESS_NAME")
        consumer = make_consumer(
            group=self.settings.consumer_group,
            group_instance_id=f"{self.settings.instance}{name}" if name else None,
        )
        assignment = _Assignment()
        consumer.subscribe([self.settings.topic_score_change], listener=assignment)
        return consumer, assignment

    async def run(self) -> None:
        log.info("starting")
        metrics.serve()
        await db.open_pool()
        await self.producer.start()
        self.publisher = SnapshotPublisher(
            get_redis(),
            self.producer,
            get_emitter(),
            self.settings.topic_top10,
            linger_s=max(self.settings.leaderboard_top10_linger_ms, 0) / 1000,
        )
        self.ticks = SessionTicks(
            self.publisher.read,
            self.publisher.send,
            self.ledger.covered,
            **tick_options(self.settings),
        )
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
            await self.ticks.stop()
            await self._stop_consumer()
            await self.producer.stop()
            await close_redis()
            await db.close_pool()
            log.info("consumer stopped")

    async def _loop(self) -> None:
        assert self.ticks is not None
        tick_ms = max(self.settings.leaderboard_tick_ms, 1)
        while not self.stopping.is_set():
            if len(self.ledger) >= MAX_OUTSTANDING_BATCHES:
                # Publishing is behind (Redis or Kafka trouble): let it catch up first.
                self.watch.fetched()  # not fetching on purpose
                await asyncio.sleep(tick_ms / 1000)
                await self._commit_ready(force=True)
                continue
            why: str | None = self.renew_requested
            if not why and self.watch.probe_due():
                why = self.watch.probed(await self._end_offsets(), bool(self.assignment.assigned))
            if why:
                self.renew_requested = ""
                await self._renew(why)
                continue
            try:
                batch = await self.consumer.getmany(timeout_ms=tick_ms)
            except KafkaError as e:
                log.warning("fetch failed (%s); retrying", e)
                await asyncio.sleep(BACKOFF_MAX_S)
                continue
            if batch:
                self.watch.fetched()
                self.seq += 1
                traces = newest_traces([r for recs in batch.values() for r in recs], now_ms())
                self.ledger.add(
                    self.seq, {tp: recs[-1].offset + 1 for tp, recs in batch.items()}, set(traces)
                )
                for sid, (trace, change) in traces.items():
                    self.ticks.mark(sid, self.seq, trace, change)
            await self._commit_ready()
        await self._commit_ready(force=True)  # stopping: what is ready, at once

    async def _commit_ready(self, *, force: bool = False) -> None:
        """Commit the offsets the ledger has ready, at most once per commit interval
        (``force``: now). Delaying a commit only widens what a crash re-reads."""
        now = time.monotonic()
        if not force and now - self._committed_at < self.commit_interval_s:
            return
        offsets = self.ledger.ready()
        if not offsets:
            return
        self._committed_at = now
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError, TimeoutError) as e:
            # A rebalance took the partitions (their new owner redoes those records),
            # or the coordinator did not answer: a later commit covers these offsets,
            # and a crash before it only re-reads them.
            log.warning(
                "commit failed (%s); those records will be redelivered", str(e) or "timeout"
            )
            if isinstance(e, TimeoutError):
                self._commit_timeouts += 1
                if self._commit_timeouts >= MAX_COMMIT_TIMEOUTS:
                    self.renew_requested = f"{self._commit_timeouts} commits in a row timed out"
        else:
            self._commit_timeouts = 0

    async def _end_offsets(self) -> dict[TopicPartition, int] | None:
        """End offsets of the assigned partitions (one ListOffsets request); None when
        Kafka did not answer in time."""
        assigned = list(self.assignment.assigned)
        if not assigned:
            return {}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                return await self.consumer.end_offsets(assigned)
        except (KafkaError, TimeoutError, OSError):
            return None

    async def _renew(self, why: str) -> None:
        """Replace a wedged Kafka consumer by a new one in the same group. The batches
        not yet committed are dropped from the ledger: the new consumer starts from
        the committed offsets and delivers them again (at-least-once, idempotent)."""
        log.warning("replacing the Kafka consumer (%s): starting a new one", why)
        self.ledger.clear()
        await self._stop_consumer()
        delay = 0.5
        while not self.stopping.is_set():
            self.consumer, self.assignment = self._new_consumer()
            try:
                async with asyncio.timeout(30):
                    await self.consumer.start()
                break
            except (KafkaError, TimeoutError, OSError) as e:
                log.warning("new consumer did not start (%s); retrying", str(e) or "timeout")
                await self._stop_consumer()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        self.watch.reset()
        self._commit_timeouts = 0

    async def _stop_consumer(self) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.consumer.stop()
        except Exception as e:  # a wedged client may not stop cleanly; it is dropped
            log.warning("Kafka consumer stop failed (%s: %s)", type(e).__name__, e)

    async def _watch_redis(self) -> None:
        """Every second: rebuild boards that are dirty or lost, and mark them changed."""
        redis = get_redis()
        while True:
            try:
                rebuilt = await rebuild_if_redis_lost(redis)
                rebuilt += await rebuild_dirty_boards(redis)
                if self.ticks is not None:
                    for sid in rebuilt:
                        self.ticks.mark(sid)
            except Exception as e:
                log.warning("keeping Redis whole failed (%s: %s); retrying", type(e).__name__, e)
            await asyncio.sleep(WATCH_INTERVAL_S)


async def main() -> None:
    setup_logging()
    consumer = LeaderboardConsumer()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stopping.set)
    loop.add_signal_handler(
        signal.SIGUSR1, lambda: setattr(consumer, "renew_requested", "asked by SIGUSR1")
    )
    await consumer.run()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
