"""Per-session ticks of the leaderboard consumer, and which offsets may be committed.

``SessionTicks``: every session that changed gets its newest snapshot at most once
per tick (``settings.leaderboard_tick_ms``), each session in a task of its own, so
no session waits behind another's reads or broadcasts. A snapshot whose top 10
equals the last one broadcast is held, not sent (its player count and version ride
with the next one); a held snapshot is sent anyway once the session has been quiet
for ``settle_s`` (2 ticks) or held for ``hold_s`` (5 ticks), so a session's final
snapshot always goes out and an answer outside the top 10 is on every client within
a few ticks.

What changed is told by each mark (``Change``, from the board rank SCORE_CHANGE
carries): an answer ranked in the top 10 (``TOP``) is read at once, its broadcast
waiting only for the session's tick since the last one; answers ranked below 10 only
(``BELOW``: totals only grow, so the top 10 is as it was) are not read until their
hold ends; anything else (``UNKNOWN``: a rebuild, an answer the board did not rank)
is read at most once per tick and compared with what was sent.

The global deliveries budget is only an overload guard (``DeliveryBudget``): a
token bucket of room deliveries (a broadcast to N players is N) that lets one
second's worth through at once and has broadcasts beyond it wait their turn.
Below the budget no session ever waits for another; above it every session's
broadcasts are spaced out alike, at the budget's rate. A held snapshot (an unchanged
top 10: nothing new for any player) waits until the bucket holds its deliveries (a
full bucket, for a room larger than it), so it does not put the bucket in debt and a
top 10 that changes never waits behind one; under sustained overload held snapshots
are the ones that wait. (A quarter-second bucket made a stadium's burst of top-10
changes at a question's start wait up to 36 ms for the budget.)

``OffsetLedger``: a fetched batch of records may be committed once every session it
touched has published a snapshot read after the batch arrived (at-least-once: a
crash before that redelivers the batch, and every write is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from contracts import HopTrace, LeaderboardSnapshot

log = logging.getLogger("quizrt.leaderboard.ticks")

Read = Callable[[str], Awaitable[LeaderboardSnapshot | None]]
Send = Callable[[LeaderboardSnapshot, HopTrace | None], Awaitable[None]]
Covered = Callable[[str, int], None]

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
BURST_S = 1.0  # the budget's bucket: this many seconds of deliveries at once
_STATES_MAX = 100_000


class Change(enum.Enum):
    """What a mark says of the session's top 10."""

    UNKNOWN = 0  # read the board to know (a rebuild, an answer without a board rank)
    TOP = 1  # an answer ranked in the top 10: the top 10 changed
    BELOW = 2  # only answers ranked below 10: the top 10 is as it was

    @staticmethod
    def of(rank: int) -> Change:
        """The change one answer's board rank (0 = not known) makes."""
        return Change.UNKNOWN if rank <= 0 else Change.TOP if rank <= 10 else Change.BELOW

    def __or__(self, other: Change) -> Change:  # two answers' changes, together
        if Change.TOP in (self, other):
            return Change.TOP
        return Change.UNKNOWN if Change.UNKNOWN in (self, other) else Change.BELOW


@dataclass
class _Session:
    dirty: bool = False  # to read: the top 10 may have changed
    urgent: bool = False  # to read at once: the top 10 changed (a TOP mark)
    below: bool = False  # a BELOW mark since the last read began: a snapshot is owed
    seq: int = 0  # newest batch this session was marked in
    marked_at: float = 0.0
    trace: HopTrace | None = None
    sent_version: int = 0
    sent_entries: list | None = None
    sent_at: float = float("-inf")
    players: int = 0  # of the last broadcast: what the next one reserves of the budget
    read_at: float = float("-inf")
    held_since: float | None = None
    task: asyncio.Task | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class DeliveryBudget:
    """Room deliveries per second across every session: a token bucket that holds
    ``burst_s`` seconds of them. A broadcast waits while the bucket is in debt
    (below zero), then takes its deliveries, which may put it in debt. So a room
    of any size goes out at once after a quiet spell, and the broadcasts beyond the
    budget go out in turn at the budget's rate."""

    def __init__(self, per_s: float, burst_s: float, clock: Callable[[], float]):
        self.rate = max(per_s, 1.0)
        self.capacity = self.rate * burst_s
        self.tokens = self.capacity
        self.clock = clock
        self._at = clock()
        self.waits = 0

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def reserve(self, deliveries: int) -> float:
        """Take ``deliveries`` now; returns how long to wait before sending them."""
        self._refill()
        wait = max(0.0, -self.tokens) / self.rate
        self.tokens -= deliveries
        if wait > 0:
            self.waits += 1
        return wait

    def until_room(self, deliveries: int) -> float:
        """How long until the bucket holds ``deliveries`` (0: now), taking nothing."""
        self._refill()
        return max(0.0, min(deliveries, self.capacity) - self.tokens) / self.rate

    def give_back(self, deliveries: int) -> None:
        """Deliveries reserved and not sent (negative: sent and not reserved)."""
        self.tokens = min(self.capacity, self.tokens + deliveries)


class SessionTicks:
    def __init__(
        self,
        read: Read,
        send: Send,
        covered: Covered,
        *,
        tick_s: float = 0.05,
        deliveries_per_s: float = 16_000,
        hold_s: float | None = None,
        settle_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.read = read
        self.send = send
        self.covered = covered
        self.tick_s = tick_s
        self.budget = DeliveryBudget(deliveries_per_s, BURST_S, clock)
        self.hold_s = 5 * tick_s if hold_s is None else hold_s
        self.settle_s = 2 * tick_s if settle_s is None else settle_s
        self.clock = clock
        self.sessions: dict[str, _Session] = {}
        self.broadcasts = 0
        self.held = 0

    # ---- input

    def mark(
        self,
        sid: str,
        seq: int = 0,
        trace: HopTrace | None = None,
        change: Change = Change.UNKNOWN,
    ) -> None:
        """The session changed (in batch ``seq``; 0: outside any batch, e.g. a rebuild)."""
        st = self.sessions.get(sid)
        if st is None:
            if len(self.sessions) > _STATES_MAX:
                self._forget_idle()
            st = self.sessions[sid] = _Session()
        if change is Change.BELOW:
            st.below = True
            if st.held_since is None and not st.dirty:
                st.held_since = self._hold()
        else:
            st.dirty = True
            st.urgent = st.urgent or change is Change.TOP
        st.seq = max(st.seq, seq)
        st.marked_at = self.clock()
        if trace is not None and (st.trace is None or trace.arrived_ms >= st.trace.arrived_ms):
            st.trace = trace
        st.wake.set()
        if st.task is None or st.task.done():
            st.task = asyncio.create_task(self._run(sid, st))

    async def stop(self) -> None:
        tasks = [st.task for st in self.sessions.values() if st.task and not st.task.done()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def busy(self) -> bool:
        """True while any session has a snapshot to publish (dirty or held)."""
        return any(
            st.dirty or st.held_since is not None or (st.task is not None and not st.task.done())
            for st in self.sessions.values()
        )

    # ---- the tick

    def _flush_at(self, st: _Session) -> float:
        assert st.held_since is not None
        return min(st.held_since + self.hold_s, st.marked_at + self.settle_s)

    async def _run(self, sid: str, st: _Session) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            # At most one broadcast per tick and, unless the top 10 changed, one read
            # per tick, also while a snapshot is held. A mark meanwhile wakes the wait
            # (a TOP mark may shorten it).
            while True:
                due = st.sent_at + self.tick_s
                if not st.urgent:
                    due = max(due, st.read_at + self.tick_s)
                wait = due - self.clock()
                if wait <= 0:
                    break
                await _until_marked(st, wait)
            if not st.dirty:
                if st.held_since is None:
                    return  # nothing owed: the next mark starts a new task
                due = self._flush_at(st) - self.clock()
                if due > 0:
                    await _until_marked(st, due)
                    continue
                # A held snapshot shows no player anything new: it goes only once the
                # bucket holds its deliveries, so a top 10 that changes never waits
                # behind one.
                due = self.budget.until_room(st.players)
                if due > 0:
                    await _until_marked(st, due)
                    continue
            # The overload guard: past the budget, wait for this broadcast's turn (the
            # read comes after the wait, so it is as fresh as ever).
            reserved = st.players
            wait = self.budget.reserve(reserved)
            if wait > 0:
                await asyncio.sleep(wait)
            seq, trace = st.seq, st.trace
            st.dirty = st.urgent = st.below = False
            st.read_at = self.clock()
            try:
                snap = await self.read(sid)
                if snap is None or snap.version <= st.sent_version:
                    self.budget.give_back(reserved)
                    st.held_since = self._hold() if st.below else None
                    self.covered(sid, seq)
                    continue
                unchanged = st.sent_entries is not None and snap.entries == st.sent_entries
                if unchanged and (st.held_since is None or self.clock() < self._flush_at(st)):
                    self.budget.give_back(reserved)
                    if st.held_since is None:
                        st.held_since = self._hold()
                    continue
                started = self.clock()
                self.budget.give_back(reserved - snap.players)  # what it really delivers
                await self.send(snap, trace)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning(
                    "publishing session %s failed (%s: %s); retrying in %.1fs",
                    sid, type(e).__name__, e, backoff,
                )  # fmt: skip
                st.dirty = True
                st.urgent = False  # a retry waits its backoff and the read tick
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            if st.trace is trace:
                st.trace = None
            st.sent_version, st.sent_entries = snap.version, snap.entries
            # The tick counts from the broadcast's start: ``send`` returns only once Kafka
            # acknowledged TOP_10 (its linger, then the ack), long after the room event.
            st.sent_at = started
            # A BELOW mark that came during this read may be newer than what was sent.
            st.held_since = self._hold() if st.below else None
            st.players = snap.players
            self.broadcasts += 1
            self.covered(sid, seq)

    def _hold(self) -> float:
        """A hold that starts now: its start, counted in ``held``."""
        self.held += 1
        return self.clock()

    def _forget_idle(self) -> None:
        for sid in [s for s, st in self.sessions.items() if st.task is None or st.task.done()]:
            if not self.sessions[sid].dirty and self.sessions[sid].held_since is None:
                del self.sessions[sid]


async def _until_marked(st: _Session, timeout: float) -> None:
    """Wait ``timeout`` seconds, or less when the session is marked meanwhile."""
    st.wake.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(st.wake.wait(), timeout)


@dataclass
class _Batch:
    seq: int
    offsets: dict[Hashable, int]
    waiting: set[str]


class OffsetLedger:
    """Fetched batches in order, each waiting for its sessions' snapshots."""

    def __init__(self) -> None:
        self._batches: deque[_Batch] = deque()

    def __len__(self) -> int:
        return len(self._batches)

    def clear(self) -> None:
        """Forget every batch (a new consumer delivers the uncommitted ones again)."""
        self._batches.clear()

    def add(self, seq: int, offsets: dict[Hashable, int], sessions: set[str]) -> None:
        self._batches.append(_Batch(seq, dict(offsets), set(sessions)))

    def covered(self, sid: str, seq: int) -> None:
        """``sid`` published a snapshot read after batch ``seq`` (and every earlier one)."""
        for b in self._batches:
            if b.seq > seq:
                break
            b.waiting.discard(sid)

    def ready(self) -> dict[Hashable, int]:
        """Offsets to commit: the newest of every complete batch at the front (removed)."""
        out: dict[Hashable, int] = {}
        while self._batches and not self._batches[0].waiting:
            out.update(self._batches.popleft().offsets)
        return out
