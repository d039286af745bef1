"""The one Kafka producer wrapper, topic creation, and consumer construction.

python -m services.common.kafka create-topics
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from services.common.settings import Settings, get_settings


class KeyPartitioner:
    """aiokafka's default partitioner (murmur2 of the key over all partitions), with
    each key's partition remembered: the keys are session ids, few and repeated, and
    aiokafka's murmur2 is pure Python (2.5 % of a quiz process's CPU in the spike)."""

    def __init__(self, remember: int = 10_000):
        self._default = DefaultPartitioner()
        self._known: dict[tuple[bytes, int], int] = {}
        self._remember = remember

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)
        k = (key, len(all_partitions))
        p = self._known.get(k)
        if p is None:
            if len(self._known) >= self._remember:
                self._known.clear()
            p = self._known[k] = self._default(key, all_partitions, available)
        return p


class EventProducer:
    """One long-lived idempotent producer per process (acks=all, ordered per key)."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            partitioner=KeyPartitioner(),
            linger_ms=1,
            # A whole commit batch of answers (the relay hands over up to 500 records
            # of ~450 bytes at once) fits in one batch per partition: one produce
            # request per relay batch, and a send never waits for buffer space.
            max_batch_size=512 * 1024,
            request_timeout_ms=5000,
            retry_backoff_ms=100,
            metadata_max_age_ms=30000,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # a producer that did not start is not kept
            raise
        self._producer = producer

    async def renew(self) -> None:
        """Replace the aiokafka producer by a new one (a new producer id). After a
        fatal error (``OutOfOrderSequenceNumber``: a batch that expired while Kafka was
        away left a gap in the sequence numbers; ``ProducerFenced``) the old one
        refuses every send for good. Raises when the new one cannot start (Kafka
        away): call again later."""
        old, self._producer = self._producer, None
        if old is not None:
            try:
                await asyncio.wait_for(old.stop(), 5)
            except Exception:
                pass  # an unusable producer may not stop cleanly; it is dropped
        await self.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def send_many(
        self, topic: str, records: Iterable[tuple[str, bytes]], timeout: float = 5.0
    ) -> None:
        """Send (key, value) records and wait until Kafka has every one of them.

        Sends are started together and awaited as a group, so a batch costs about one
        broker round trip. Raises when any record was not acknowledged in time.
        """
        if self._producer is None:
            raise RuntimeError("producer not started")
        # The whole call is bounded: ``send`` itself waits for metadata and buffer
        # space, and a client that lost its broker must not hold its caller forever.
        async with asyncio.timeout(timeout):
            futures = [
                await self._producer.send(topic, value=value, key=key.encode())
                for key, value in records
            ]
            if futures:
                await asyncio.gather(*futures)

    async def ping(self) -> bool:
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2)
            return True
        except Exception:
            return False


def make_consumer(*topics: str, group: str | None = None, **kwargs: Any) -> AIOKafkaConsumer:
    """A consumer of this stack's Kafka with manual commits (commit after the work)."""
    s = get_settings()
    opts = dict(
        bootstrap_servers=s.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        # The broker answers as soon as any record is there (fetch_min_bytes=1); a
        # longer wait spares the broker an idle consumer's empty fetches (2 a second
        # instead of 10), but a partition left out of the fetch in flight (aiokafka
        # still held records of it) waits for that fetch to return. Fewer heartbeats
        # spare the broker too. Measured on an idle single broker with the stack's
        # three producers and one consumer: 500 ms and a 1 s heartbeat 2.17 % of a
        # core, a 3 s heartbeat 2.00 %, a 1 s wait on top 1.77 % (the broker alone
        # 1.50 %); a 1 s wait saved too little to risk the added read latency.
        fetch_max_wait_ms=500,
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
    )
    opts.update(kwargs)
    return AIOKafkaConsumer(*topics, **opts)


async def create_topics(settings: Settings | None = None) -> None:
    """SCORE_CHANGE keyed by session id; TOP_10 compacted (latest snapshot per session).

    Both with ``QUIZ_KAFKA_REPLICATION`` replicas (1 on the single-node stack, 3 on
    a three-broker cluster) and, when replicated, ``min.insync.replicas`` of one less
    (at most 2): with acks=all an answer's event is acknowledged only once two
    brokers hold it, and losing one broker stops nothing.
    """
    s = settings or get_settings()
    rf = max(1, s.kafka_replication)
    replicated = {"min.insync.replicas": str(max(1, min(2, rf - 1)))}
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=10000)
    for attempt in range(360):  # brokers of a cluster may still be starting
        try:
            await admin.start()
            break
        except Exception:
            if attempt == 359:
                raise
            await asyncio.sleep(0.5)
    try:
        topics = [
            NewTopic(
                s.topic_score_change,
                num_partitions=s.score_change_partitions,
                replication_factor=rf,
                # The broker stamps each record when it appends it: the consumer reads
                # that as the moment Kafka acknowledged the answer (hop trace).
                topic_configs={**replicated, "message.timestamp.type": "LogAppendTime"},
            ),
            NewTopic(
                s.topic_top10,
                num_partitions=s.score_change_partitions,
                replication_factor=rf,
                topic_configs={
                    **replicated,
                    "cleanup.policy": "compact",
                    "min.cleanable.dirty.ratio": "0.1",
                    "segment.ms": "600000",
                },
            ),
        ]
        existing = set(await admin.list_topics())
        todo = [t for t in topics if t.name not in existing]
        if todo:
            await _enough_brokers(admin, rf)
            try:
                response = await admin.create_topics(todo)
            except TopicAlreadyExistsError:
                pass
            else:
                # aiokafka returns per-topic errors instead of raising them.
                for name, code, *rest in response.topic_errors:
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise RuntimeError(f"could not create {name}: error {code} {rest}")
    finally:
        await admin.close()


async def _enough_brokers(admin: AIOKafkaAdminClient, replicas: int, timeout: float = 180) -> None:
    """Wait until ``replicas`` brokers have joined (a cluster's brokers may still be
    starting when the stack creates its topics)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        brokers = len((await admin.describe_cluster())["brokers"])
        if brokers >= replicas:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"{brokers} Kafka brokers after {timeout:.0f}s, {replicas} needed")
        await asyncio.sleep(0.5)


async def list_topics() -> None:
    """Print each topic with its partition count (an admin view without Kafka UI)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=get_settings().kafka_bootstrap)
    await admin.start()
    try:
        for t in await admin.describe_topics(sorted(await admin.list_topics())):
            print(f"{t['topic']:40} partitions={len(t['partitions'])}")
    finally:
        await admin.close()


if __name__ == "__main__":
    commands = {"create-topics": create_topics, "list-topics": list_topics}
    if len(sys.argv) == 2 and sys.argv[1] in commands:
        asyncio.run(commands[sys.argv[1]]())
    else:
        raise SystemExit("usage: python -m services.common.kafka create-topics|list-topics")
