"""How the leaderboard consumer recovers its Kafka clients. The consumer client
(services/leaderboard/liveness.py): a quiet topic and a busy consumer never replace
it; records that stay unfetched, no assignment, or a Kafka that stops answering do.
The TOP_10 producer (services/leaderboard/publish.py): one an outage left unusable
is replaced before the next request."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from services.leaderboard.liveness import FetchWatch
from services.leaderboard.publish import LingeringSend


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def watch(clock: Clock) -> FetchWatch:
    return FetchWatch(probe_s=5, stall_s=15, unassigned_s=45, max_failures=3, clock=clock)


def test_probes_only_when_idle() -> None:
    c = Clock()
    w = watch(c)
    assert not w.probe_due()
    c.t += 4
    w.fetched()
    c.t += 4
    assert not w.probe_due()  # fetched 4 s ago
    c.t += 1
    assert w.probe_due()
    assert w.probed({"p0": 10}, True) is None
    c.t += 1
    assert not w.probe_due()  # probed 1 s ago


def test_a_quiet_topic_is_never_a_stall() -> None:
    c = Clock()
    w = watch(c)
    for _ in range(100):
        c.t += 5
        assert w.probed({"p0": 10, "p1": 3}, True) is None


def test_records_fetched_after_they_arrive_are_no_stall() -> None:
    c = Clock()
    w = watch(c)
    ends = 10
    for _ in range(50):
        c.t += 5
        assert w.probed({"p0": ends}, True) is None
        ends += 7  # records arrive ...
        c.t += 1
        w.fetched()  # ... and are fetched


def test_records_that_stay_unfetched_are_a_stall() -> None:
    c = Clock()
    w = watch(c)
    c.t += 5
    assert w.probed({"p0": 10}, True) is None
    c.t += 5
    assert w.probed({"p0": 12}, True) is None  # arrived 5 s ago: still in time
    c.t += 5
    assert w.probed({"p0": 12}, True) is None
    c.t += 5
    why = w.probed({"p0": 12}, True)
    assert why is not None and "none were fetched" in why
    w.reset()  # a new client starts with a clean slate
    c.t += 5
    assert w.probed({"p0": 12}, True) is None


def test_no_assignment_for_long_is_a_stall() -> None:
    c = Clock()
    w = watch(c)
    for _ in range(8):
        c.t += 5
        assert w.probed({}, False) is None
    c.t += 10
    why = w.probed({}, False)
    assert why is not None and "no partitions" in why
    w.reset()
    c.t += 5
    assert w.probed({}, False) is None


def test_kafka_not_answering_many_probes_is_a_stall_a_few_are_not() -> None:
    c = Clock()
    w = watch(c)
    for _ in range(2):
        c.t += 5
        assert w.probed(None, True) is None
    c.t += 5
    assert w.probed({"p0": 1}, True) is None  # it answered: the count starts again
    for _ in range(2):
        c.t += 5
        assert w.probed(None, True) is None
    c.t += 5
    why = w.probed(None, True)
    assert why is not None and "did not answer" in why


class BrokenProducer:
    """Stands in for EventProducer after an outage: every send fails with the fatal
    OutOfOrderSequenceNumber until ``renew``; the first renew fails (Kafka still away)."""

    def __init__(self) -> None:
        self.renew_calls = 0
        self.fresh = False
        self.sent: list[tuple[str, bytes]] = []

    async def send_many(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        if not self.fresh:
            raise OutOfOrderSequenceNumber()
        self.sent += records

    async def renew(self) -> None:
        self.renew_calls += 1
        if self.renew_calls == 1:
            raise KafkaConnectionError("still away")
        self.fresh = True


async def test_a_producer_an_outage_broke_is_renewed_before_the_next_request() -> None:
    """Before, the consumer kept its producer, and every TOP_10 send after a long
    Kafka outage failed with OutOfOrderSequenceNumber for good."""
    producer = BrokenProducer()
    sender = LingeringSend(cast(Any, producer), "TOP_10", 0.0)
    with pytest.raises(OutOfOrderSequenceNumber):
        await sender.send("s1", b"1")
    with pytest.raises(KafkaConnectionError):  # the renewal itself failed: tried again
        await sender.send("s1", b"2")
    await sender.send("s1", b"3")
    assert producer.renew_calls == 2 and sender.renewals == 1
    assert producer.sent == [("s1", b"3")]
    await sender.send("s2", b"4")  # no renewal while the new producer works
    assert producer.renew_calls == 2 and producer.sent[-1] == ("s2", b"4")
