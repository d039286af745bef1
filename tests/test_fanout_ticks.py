"""Per-session ticks of the leaderboard consumer and its offset ledger (in-process).

The boards here are plain dicts standing in for the Redis read; what is tested is
the scheduling: at most one broadcast per session per tick, sessions independent,
an unchanged top 10 held but never a final snapshot dropped, failures retried, and
offsets released only once every session of a batch has published.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from contracts import HopTrace, LeaderboardEntry, LeaderboardSnapshot
from services.leaderboard.ticks import Change, DeliveryBudget, OffsetLedger, SessionTicks

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# its asserts are wall-clock tick intervals.
pytestmark = pytest.mark.alone

TICK = 0.03


class Boards:
    """Versioned top-10 state per session, and what was broadcast (with when)."""

    def __init__(self) -> None:
        self.state: dict[str, LeaderboardSnapshot] = {}
        self.sent: list[tuple[float, LeaderboardSnapshot, HopTrace | None]] = []
        self.slow: dict[str, float] = {}
        self.fail_next: set[str] = set()
        self.reads = 0

    def change(self, sid: str, top: list[tuple[str, int]], players: int = 20) -> None:
        old = self.state.get(sid)
        self.state[sid] = LeaderboardSnapshot(
            session_id=sid,
            version=(old.version if old else 0) + 1,
            players=players,
            entries=[
                LeaderboardEntry(rank=i + 1, user_id=u, nickname=u, score=s)
                for i, (u, s) in enumerate(top)
            ],
        )

    async def read(self, sid: str) -> LeaderboardSnapshot | None:
        self.reads += 1
        return self.state.get(sid)

    async def send(self, snap: LeaderboardSnapshot, trace: HopTrace | None) -> None:
        if snap.session_id in self.fail_next:
            self.fail_next.discard(snap.session_id)
            raise ConnectionError("kafka down")
        await asyncio.sleep(self.slow.get(snap.session_id, 0))
        self.sent.append((time.monotonic(), snap, trace))

    def versions(self, sid: str) -> list[int]:
        return [s.version for _, s, _ in self.sent if s.session_id == sid]


def ticks(boards: Boards, ledger: OffsetLedger | None = None, **kw: Any) -> SessionTicks:
    covered = ledger.covered if ledger is not None else (lambda sid, seq: None)
    return SessionTicks(boards.read, boards.send, covered, tick_s=TICK, **kw)


async def settle(t: SessionTicks, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while t.busy():
        assert time.monotonic() < deadline, "ticks never settled"
        await asyncio.sleep(0.01)


async def test_a_burst_is_sent_at_most_once_per_tick_and_ends_on_the_newest() -> None:
    b = Boards()
    t = ticks(b)
    t0 = time.monotonic()
    for i in range(200):  # 200 changes over ~0.4 s, each one changing the top 10
        b.change("s", [("a", i)])
        t.mark("s", i + 1, HopTrace(arrived_ms=i + 1))
        await asyncio.sleep(0.002)
    await settle(t)
    elapsed = time.monotonic() - t0
    vs = b.versions("s")
    assert vs == sorted(set(vs)), "versions strictly increase"
    assert vs[-1] == 200, "the newest snapshot goes out"
    assert len(vs) <= elapsed / TICK + 2, (len(vs), elapsed)
    times = [at for at, _, _ in b.sent]
    assert all(b2 - a2 >= TICK * 0.9 for a2, b2 in itertools.pairwise(times))
    # The trace is the newest answer's behind the snapshot.
    _, last, trace = b.sent[-1]
    assert trace is not None and trace.arrived_ms == last.version
    await t.stop()


async def test_an_unchanged_top_10_is_held_but_the_final_snapshot_is_never_dropped() -> None:
    b = Boards()
    t = ticks(b, hold_s=10.0)
    b.change("s", [("a", 5)], players=3)
    t.mark("s", 1)
    await settle(t)
    assert b.versions("s") == [1]
    for i in range(5):  # players outside the top 10 score: the top 10 stays the same
        b.change("s", [("a", 5)], players=3 + i)
        t.mark("s", 2 + i)
        await asyncio.sleep(0.005)
    await asyncio.sleep(TICK)
    assert b.versions("s") == [1], "unchanged top 10: not broadcast at once"
    await settle(t)  # quiet for settle_s: the held snapshot goes out
    assert b.versions("s") == [1, 6]
    assert b.sent[-1][1].players == 7, "the player count rode with it"
    assert t.held >= 1
    await t.stop()


async def test_a_held_snapshot_goes_out_within_hold_s_while_answers_keep_coming() -> None:
    b = Boards()
    t = ticks(b, hold_s=0.2)
    b.change("s", [("a", 5)])
    t.mark("s", 1)
    await settle(t)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 0.6:  # steady changes outside the top 10, never quiet
        n += 1
        b.change("s", [("a", 5)], players=20 + n)
        t.mark("s", 1 + n)
        await asyncio.sleep(0.01)
    sent_during = len(b.versions("s")) - 1
    assert 1 <= sent_during <= 4, sent_during
    assert b.reads <= 0.6 / TICK + 3, f"{b.reads} reads for {n} changes: one per tick at most"
    await settle(t)
    assert b.versions("s")[-1] == b.state["s"].version
    await t.stop()


async def test_a_top_10_change_is_read_at_once_not_at_the_next_read_tick() -> None:
    b = Boards()
    t = SessionTicks(b.read, b.send, lambda sid, seq: None, tick_s=0.3, hold_s=10, settle_s=10)
    b.change("s", [("a", 5)])
    t.mark("s", 1, change=Change.TOP)
    await settle(t)
    await asyncio.sleep(0.35)  # a tick since that broadcast
    b.change("s", [("a", 5)], players=30)  # the board read by an UNKNOWN mark: unchanged
    t.mark("s", 2)
    await asyncio.sleep(0.05)
    assert (b.reads, b.versions("s")) == (2, [1]), "read, unchanged, held"
    b.change("s", [("b", 9), ("a", 5)])  # an answer ranked 1st
    marked = time.monotonic()
    t.mark("s", 3, change=Change.TOP)
    while b.versions("s") != [1, 3]:
        assert time.monotonic() - marked < 0.2, "waited for the read tick (0.3 s)"
        await asyncio.sleep(0.005)
    await t.stop()


async def test_the_tick_counts_from_a_broadcasts_start_not_from_its_kafka_ack() -> None:
    """``send`` returns once Kafka acknowledged TOP_10, well after the room event: a top
    10 change during that wait goes out when it returns, not a tick later."""
    b = Boards()
    t = SessionTicks(b.read, b.send, lambda sid, seq: None, tick_s=0.2, hold_s=10, settle_s=10)
    b.slow["s"] = 0.3  # the room event, then the TOP_10 linger and ack
    b.change("s", [("a", 5)])
    t0 = time.monotonic()
    t.mark("s", 1, change=Change.TOP)
    await asyncio.sleep(0.05)
    b.change("s", [("b", 9), ("a", 5)])
    t.mark("s", 2, change=Change.TOP)
    await settle(t)
    assert b.versions("s") == [1, 2]
    second = b.sent[1][0] - t0
    # From the start: sent again at once when the first returns (0.3 s), done at 0.6 s;
    # from the return, it would start at 0.5 s and be done at 0.8 s.
    assert second < 0.7, second
    await t.stop()


async def test_answers_below_the_top_10_are_not_read_until_their_hold_ends() -> None:
    b = Boards()
    t = ticks(b, hold_s=10.0)
    b.change("s", [("a", 5)])
    t.mark("s", 1, change=Change.TOP)
    await settle(t)
    reads = b.reads
    for i in range(5):
        b.change("s", [("a", 5)], players=30 + i)
        t.mark("s", 2 + i, change=Change.BELOW)
        await asyncio.sleep(0.005)
    await asyncio.sleep(TICK)
    assert b.reads == reads and b.versions("s") == [1], "no read, no broadcast yet"
    await settle(t)  # quiet for settle_s: one read, and the newest snapshot goes out
    assert b.reads == reads + 1 and b.versions("s") == [1, 6]
    await t.stop()


async def test_an_answer_below_the_top_10_during_a_broadcast_still_gets_its_snapshot() -> None:
    b = Boards()
    t = ticks(b, hold_s=10.0)
    b.slow["s"] = 0.1  # the broadcast takes a while
    b.change("s", [("a", 5)])
    t.mark("s", 1, change=Change.TOP)
    await asyncio.sleep(0.03)  # read done, sending
    b.change("s", [("a", 5)], players=40)  # written after that read
    t.mark("s", 2, change=Change.BELOW)
    await settle(t)
    assert b.versions("s") == [1, 2], "the final snapshot is never dropped"
    await t.stop()


def test_a_batchs_change_is_top_if_any_answer_is_unknown_if_any_is_below_otherwise() -> None:
    assert [Change.of(r) for r in (0, 1, 10, 11)] == [
        Change.UNKNOWN, Change.TOP, Change.TOP, Change.BELOW,
    ]  # fmt: skip
    assert Change.BELOW | Change.TOP is Change.TOP
    assert Change.BELOW | Change.UNKNOWN is Change.UNKNOWN
    assert Change.BELOW | Change.BELOW is Change.BELOW


async def test_sessions_do_not_wait_behind_a_slow_one() -> None:
    b = Boards()
    t = ticks(b)
    b.slow["slow"] = 0.5
    b.change("slow", [("a", 1)])
    t.mark("slow", 1)
    await asyncio.sleep(0.01)
    t0 = time.monotonic()
    b.change("fast", [("b", 1)])
    t.mark("fast", 1)
    while not b.versions("fast"):  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    assert time.monotonic() - t0 < 0.25, "the fast session waited behind the slow one"
    await settle(t)
    assert b.versions("slow") == [1]
    await t.stop()


async def test_the_budget_stretches_every_sessions_tick_evenly() -> None:
    b = Boards()
    # 4 sessions of 1,000 players and a budget of 20,000/s: 4,000 per round of
    # broadcasts, so at most 5 rounds a second (0.2 s ticks) instead of 33.
    t = ticks(b, deliveries_per_s=20_000)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 1.0:
        i += 1
        for s in "abcd":
            b.change(s, [("x", i)], players=1000)
            t.mark(s, i)
        await asyncio.sleep(0.005)
    await settle(t)
    counts = [len(b.versions(s)) for s in "abcd"]
    assert max(counts) <= 12, counts  # ~1 s / 0.2 s, plus the first ones, and the last
    assert max(counts) - min(counts) <= 2, counts
    await t.stop()


async def test_below_the_budget_a_top_10_change_waits_only_for_its_own_tick() -> None:
    b = Boards()
    # 20 rooms of 100, each broadcasting every ~0.1 s: 20,000 deliveries/s would be
    # one broadcast per 100 ms tick in every room, but they use a tenth of the
    # budget. A new top 10 in one of them, past its own tick since its last
    # broadcast, goes out at once.
    t = ticks(b, deliveries_per_s=20_000)
    rooms = [f"r{i}" for i in range(20)]
    for rnd in range(1, 4):
        for s in rooms:
            b.change(s, [("x", rnd)], players=100)
            t.mark(s, rnd, change=Change.TOP)
        await settle(t)
        await asyncio.sleep(0.1)
    for s in rooms:
        b.change(s, [("x", 4)], players=100)
        t.mark(s, 4, change=Change.TOP)
    while any(b.versions(s)[-1] != 4 for s in rooms):  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    await asyncio.sleep(TICK + 0.015)
    b.change("r0", [("x", 5)], players=100)
    marked = time.monotonic()
    t.mark("r0", 5, change=Change.TOP)
    while b.versions("r0")[-1] != 5:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    assert b.sent[-1][0] - marked < 0.03, b.sent[-1][0] - marked
    assert t.budget.waits == 0
    await t.stop()


async def test_a_held_snapshot_waits_for_room_in_the_budget_a_top_10_change_does_not() -> None:
    b = Boards()
    # A budget of 1,000 deliveries a second (the bucket holds one second of them).
    t = ticks(b, deliveries_per_s=1000, hold_s=0.05)
    b.change("h", [("x", 1)], players=600)
    t.mark("h", 1, change=Change.TOP)
    b.change("c", [("y", 1)], players=300)
    t.mark("c", 1, change=Change.TOP)
    await settle(t)  # 900 of the 1,000 taken
    # Answers below h's top 10: its snapshot is held, then due (quiet), but the bucket
    # lacks its 600 deliveries; meanwhile c's top 10 changes.
    b.change("h", [("x", 1)], players=601)
    held = time.monotonic()
    t.mark("h", 2, change=Change.BELOW)
    await asyncio.sleep(0.1)
    b.change("c", [("y", 2)], players=300)
    marked = time.monotonic()
    t.mark("c", 2, change=Change.TOP)
    while b.versions("c") != [1, 2]:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    assert b.sent[-1][0] - marked < 0.03, "the changed top 10 went at once"
    assert b.versions("h") == [1], "the held one waits for room in the bucket"
    await settle(t)
    assert b.versions("h") == [1, 2], "and then goes: the final snapshot is never dropped"
    went = next(at for at, snap, _ in b.sent if snap.session_id == "h" and snap.version == 2)
    assert went - held > 0.5, went - held  # ~0.8 s: the bucket refilled to 600
    assert t.budget.tokens >= -1, "a held snapshot never put the bucket in debt"
    await t.stop()


def test_the_delivery_budget_lets_a_room_out_after_a_quiet_spell_then_keeps_its_rate() -> None:
    now = [100.0]
    budget = DeliveryBudget(20_000, 0.25, lambda: now[0])  # holds 5,000 deliveries
    assert budget.reserve(10_000) == 0.0, "a room larger than the bucket, after quiet"
    assert budget.reserve(100) == pytest.approx(0.25), "the next waits out the debt"
    budget.give_back(100)  # reserved, then not sent (an unchanged top 10)
    now[0] += 0.25
    assert budget.reserve(1_000) == 0.0
    # Sustained: 400 broadcasts to 1,000 players, each sent when its wait ends, go at
    # the budget's rate: 400,000 / 20,000 = 20 s.
    start = now[0]
    for _ in range(400):
        now[0] += budget.reserve(1_000)
    assert now[0] - start == pytest.approx(20.0)
    assert budget.waits == 401
    # What a held snapshot asks (it waits for room instead of taking it): nothing taken.
    assert budget.until_room(1_000) == pytest.approx(0.1)  # 1,000 in debt, 1,000 needed
    now[0] += 0.1
    assert budget.until_room(1_000) == pytest.approx(0.0)
    assert budget.until_room(99_999) == pytest.approx(0.2), "at most a full bucket"


async def test_a_failed_send_is_retried_and_offsets_wait_for_every_session() -> None:
    b = Boards()
    ledger = OffsetLedger()
    t = ticks(b, ledger)
    b.fail_next.add("b")
    b.change("a", [("x", 1)])
    b.change("b", [("y", 1)])
    ledger.add(1, {"p0": 10}, {"a", "b"})
    t.mark("a", 1)
    t.mark("b", 1)
    ledger.add(2, {"p0": 12}, set())  # a batch of malformed records only
    while not b.versions("a"):  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    assert ledger.ready() == {}, "b has not published yet: nothing to commit"
    await settle(t)
    assert b.versions("b") == [1], "retried after the failure"
    assert ledger.ready() == {"p0": 12}
    assert len(ledger) == 0
    await t.stop()


def test_ledger_releases_batches_in_order_only() -> None:
    ledger = OffsetLedger()
    ledger.add(1, {"p0": 5, "p1": 3}, {"a"})
    ledger.add(2, {"p0": 9}, {"b"})
    ledger.covered("b", 2)
    assert ledger.ready() == {}, "batch 1 still waits for a"
    ledger.covered("a", 1)
    assert ledger.ready() == {"p0": 9, "p1": 3}
    ledger.add(3, {"p1": 4}, {"a"})
    ledger.covered("a", 2)  # a snapshot read before batch 3 arrived covers nothing of it
    assert ledger.ready() == {}


def test_the_consumers_ticks_come_from_the_settings() -> None:
    from services.common.settings import load_settings
    from services.leaderboard.consumer import tick_options

    default = tick_options(load_settings({}))
    assert default == {"tick_s": 0.025, "hold_s": 0.125, "deliveries_per_s": 16000}
    env = {"QUIZ_LEADERBOARD_TICK_MS": "40", "QUIZ_LEADERBOARD_HOLD_TICKS": "1"}
    assert tick_options(load_settings(env))["hold_s"] == 0.04
    assert tick_options(load_settings({"QUIZ_LEADERBOARD_HOLD_TICKS": "0"}))["hold_s"] == 0.025
