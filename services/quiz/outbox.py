"""The outbox relay: SCORE_CHANGE rows written with each answer go to Kafka.

One relay per quiz process, with the process's one producer, in one task:

- fast path: the ids of the rows of each batch of answers this process just
  committed (``notify_batch``) are claimed in a transaction (``UPDATE ... SET
  sent_at = now() ... RETURNING``, row locks held), handed to the producer together
  (one produce batch per commit batch, or several batches coalesced when they
  queued meanwhile), and committed once Kafka has acknowledged every record;
- sweeper, every second: rows still unsent after 2 s (a process died, or Kafka was
  down) are claimed with ``FOR UPDATE SKIP LOCKED`` under a cluster-wide advisory lock
  (one sweeper at a time) and sent in id order, 1,000 per transaction.

Why the relay waits for Kafka instead of giving up after a timeout: the producer is
idempotent, so aiokafka retries a record until the broker has it and never expires
it. A record handed to the producer will be delivered; rolling its row back after a
timeout would let the sweeper send it a second time. So the claiming transaction
stays open until the acknowledgement, and a row is marked sent exactly when Kafka
has it. While Kafka is down the relay waits; answers are still accepted (their rows
stay unsent), and when it has waited long the relay switches to catching up: it
leaves the fast path and sweeps every unsent row in id order until none is left, so
the backlog it sends comes out in id order, before new rows. Order is not promised
across processes: a record another process had already handed to its producer when
Kafka went away is delivered when Kafka returns, possibly before older rows. The
leaderboard consumer does not depend on order (it reads totals from the board).

At-least-once remains in three cases: a process dying between Kafka's acknowledgement
and the COMMIT, PostgreSQL failing that COMMIT, and a producer that aiokafka leaves
unusable after an outage (a batch that expired while the partition had no leader
leaves a gap in the sequence numbers: ``OutOfOrderSequenceNumber`` for good), which
the relay replaces with a new one; records of the batch in flight may then arrive
twice. ``answer_id`` identifies a
repeat; the leaderboard consumer is unaffected by one (it republishes snapshots).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber, ProducerFenced

from contracts.events import decode_score_change
from services.common import db
from services.common.clock import now_ms
from services.common.kafka import EventProducer
from services.common.metrics import observe_ms
from services.common.settings import get_settings

log = logging.getLogger("quizrt.quiz.outbox")

SWEEP_EVERY_S = 1.0
SWEEP_MIN_AGE_S = 2.0
SWEEP_BATCH = 1000
FAST_BATCH = 500
# Records per send_many call, each call acknowledged before the next: 500 events
# (~450 bytes each) fit in one producer batch per partition (``EventProducer``'s
# max_batch_size), so the producer's buffer never fills and a send never blocks.
CHUNK = 500
# A send slower than this means Kafka was away: catch up through the sweeper.
SLOW_SEND_S = 5.0
MAX_PENDING = 50_000
# Waiting for the acknowledgement has no useful timeout (see the module docstring).
ACK_WAIT_S = 7 * 24 * 3600.0
SWEEP_LOCK = 0x5155495A4F42  # pg advisory lock id of the sweeper ("QUIZOB")

_CLAIM_FRESH = db.hot(
    """
UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[]) AND sent_at IS NULL
RETURNING id, topic, key, payload
"""
)
_CLAIM_OLD = """
SELECT id, topic, key, payload FROM outbox
WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1)
ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
"""


class OutboxRelay:
    """Publishes outbox rows to Kafka; ``notify`` hands it freshly committed rows."""

    def __init__(self, producer: EventProducer | None = None):
        self.producer = producer or EventProducer()
        self._pending: list[int] = []
        self._committed: dict[int, int] = {}  # outbox id -> when its answer committed (ms)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # Start by catching up: rows a previous run left unsent go first.
        self.catching_up = True
        self._stopping = False
        self.sent = 0

    def notify(self, outbox_id: int, committed_ms: int = 0) -> None:
        """A row was committed by this process: send it soon (never blocks)."""
        self.notify_batch([outbox_id], committed_ms)

    def notify_batch(self, outbox_ids: list[int], committed_ms: int = 0) -> None:
        """Rows committed together by this process (at ``committed_ms``): send them
        soon, together (never blocks)."""
        if self.catching_up:
            return  # the sweeper sends everything, in order
        self._pending += outbox_ids
        if committed_ms:
            self._committed.update(dict.fromkeys(outbox_ids, committed_ms))
        if len(self._pending) > MAX_PENDING or len(self._committed) > MAX_PENDING:
            self._forget_pending()
            self.catching_up = True
        self._wake.set()

    def _forget_pending(self) -> None:
        self._pending.clear()
        self._committed.clear()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Let a send in flight finish (briefly), then stop the task and the producer.

        Cancelling a send would roll its rows back while the producer may still
        deliver them, so the current batch gets a few seconds first.
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (TimeoutError, asyncio.CancelledError, Exception):
                self._task.cancel()
                try:
                    await self._task
                except (asyncio.CancelledError, Exception):
                    pass
            self._task = None
        try:
            await asyncio.wait_for(self.producer.stop(), 5)
        except Exception as e:
            log.warning("producer stop: %s", e)

    async def healthy(self) -> bool:
        """Kafka reachable by this process's producer (health only: answers never wait)."""
        return await self.producer.ping()

    # ------------------------------------------------------------------ loop

    async def _start_producer(self) -> None:
        while True:
            try:
                await self.producer.start()
                return
            except Exception as e:
                log.warning("Kafka producer cannot start yet (%s); retrying", e)
                try:
                    await self.producer.stop()
                except Exception:
                    pass
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        await self._start_producer()
        last_sweep = 0.0
        while not self._stopping:
            try:
                if self.catching_up:
                    n = await self.sweep(min_age_s=0.0)
                    last_sweep = time.monotonic()
                    if n < 0:
                        await asyncio.sleep(0.2)  # another process is sweeping
                    elif n < SWEEP_BATCH:
                        # Close to the present: take new rows on the fast path again,
                        # after one more sweep of everything committed before that.
                        self._forget_pending()
                        self.catching_up = False
                        await self.sweep(min_age_s=0.0)
                        log.info("outbox caught up; fast path on")
                    continue
                wait = max(0.0, SWEEP_EVERY_S - (time.monotonic() - last_sweep))
                if not self._pending:
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except TimeoutError:
                        pass
                self._wake.clear()
                if self._pending:
                    ids, self._pending = self._pending[:FAST_BATCH], self._pending[FAST_BATCH:]
                    started = time.monotonic()
                    await self.send_fresh(ids)
                    if time.monotonic() - started > SLOW_SEND_S:
                        log.warning("Kafka was slow or away; catching up through the sweeper")
                        self.catching_up = True
                        self._forget_pending()
                if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
                    last_sweep = time.monotonic()
                    await self.sweep(min_age_s=SWEEP_MIN_AGE_S)
            except asyncio.CancelledError:
                raise
            except (OutOfOrderSequenceNumber, ProducerFenced) as e:
                # Fatal for this producer (its sender task ended): a batch that expired
                # while Kafka had no leader left a gap in its sequence numbers, which
                # the broker refuses forever. A new producer (new producer id) sends
                # the rolled-back rows again; some may be delivered twice (the
                # consumer tolerates a repeated answer_id).
                log.warning("outbox relay: producer unusable (%r); starting a new one", e)
                self.catching_up = True
                self._forget_pending()
                try:
                    await asyncio.wait_for(self.producer.stop(), 5)
                except Exception:
                    pass
                await self._start_producer()
            except KafkaError as e:
                # Raised before a record was handed over (e.g. no topic metadata while
                # Kafka is away): the rolled-back rows are simply sent later.
                log.warning("outbox relay: Kafka not ready (%r); rows stay unsent", e)
                self.catching_up = True
                self._forget_pending()
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("outbox relay error; rows stay unsent and are retried")
                self.catching_up = True
                self._forget_pending()
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ sending

    async def send_fresh(self, ids: Sequence[int]) -> int:
        """Claim and send rows by id (those not sent yet); returns how many were sent."""
        async with db.connection() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM_FRESH, list(ids))
            await self._send(sorted(rows, key=lambda r: r["id"]))
        for i in ids:  # rows another process's sweeper had taken
            self._committed.pop(i, None)
        self.sent += len(rows)
        return len(rows)

    async def sweep(self, min_age_s: float) -> int:
        """Send unsent rows older than ``min_age_s`` in id order, a batch at a time.

        Returns how many were sent, or -1 when another process holds the sweeper lock.
        """
        total = 0
        while True:
            async with db.connection() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
                    return -1 if total == 0 else total
                rows = await conn.fetch(_CLAIM_OLD, min_age_s, SWEEP_BATCH)
                if rows:
                    await self._send(rows)
                    await conn.execute(
                        "UPDATE outbox SET sent_at = now() WHERE id = ANY($1)",
                        [r["id"] for r in rows],
                    )
            total += len(rows)
            self.sent += len(rows)
            if len(rows) < SWEEP_BATCH:
                return total

    async def _send(self, rows: Sequence[Any]) -> None:
        """Send rows in order, waiting for Kafka's acknowledgement of each chunk.

        SCORE_CHANGE records get their hop times (when the answer committed, when the
        record was handed to the producer) filled in on the way out.
        """
        score_topic = get_settings().topic_score_change
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            produced = now_ms()
            by_topic: dict[str, list[tuple[str, bytes]]] = {}
            times: list[tuple[int, int]] = []
            for r in chunk:
                payload = bytes(r["payload"])
                if r["topic"] == score_topic:
                    committed = self._committed.pop(r["id"], 0)
                    payload = _stamped(payload, committed, produced)
                    times.append((committed, produced))
                by_topic.setdefault(r["topic"], []).append((r["key"], payload))
            for topic, records in by_topic.items():
                await self.producer.send_many(topic, records, timeout=ACK_WAIT_S)
            acked = now_ms()
            for committed, _ in times:
                observe_ms("commit_produce", committed, produced)
                observe_ms("produce_ack", produced, acked)


def _stamped(payload: bytes, committed_ms: int, produced_ms: int) -> bytes:
    """A SCORE_CHANGE payload with its commit and produce times (unknown commit: kept)."""
    try:
        event = decode_score_change(payload)
    except msgspec.DecodeError:
        return payload  # not ours to fix: sent as stored
    return msgspec.json.encode(
        msgspec.structs.replace(
            event, committed_ms=committed_ms or event.committed_ms, produced_ms=produced_ms
        )
    )
