"""What one client saw of the leaderboard, and when its own answers reached it.

Answer-to-leaderboard latency, as measured here (all times from one process's
monotonic clock, so no clocks are compared across processes or machines):

    from the moment the client starts sending an answer
    to the receipt, on that same client's socket, of the first ``leaderboard``
    event that reflects the answer.

"Reflects" has two definitions, chosen per answer by what the reply carries:

* ``version`` (exact, every accepted answer): when the answer's reply carries the
  board ``version`` written with it, the first event whose version is at least
  that one. Versions only grow and one version is one snapshot, so that event is
  the first snapshot taken after the answer was on the board, whether or not the
  player is in the top 10.
* ``score`` (fallback, a subset): when the reply has no version, only answers
  that raised the score (points > 0) and placed the player in the top 10 at reply
  time are measured: the first event listing this player with a score at least
  the reply's total. An answer whose player was pushed out of the top 10 before
  any snapshot showed the new score cannot be matched; it is counted as
  ``displaced`` (not as delivered, not as lost) when the last snapshot received
  shows a full top 10 at or above that score.

The answers whose reply ranked the player in the top 10 (``visible``: the ones
that change what the other players see) also get their own hops: when the event
that reflects one has the answer's own version (the snapshot was read with that
answer the newest on the board) and its trace arrived at the quiz service after the
client sent the answer (an older answer's trace, e.g. of a held snapshot read just
after this answer's write, is not this one's), the trace's hops and the client's
send -> quiz arrival go into ``top10_hops`` (wall clock ms, one machine). Every
timed one of them whose event has a trace also splits its latency in two there:
``send_emit`` (the client's send -> the consumer's emit of the room event) and
``emit_client`` (the emit -> this client's receipt).

The same answers are also timed at every *other* player of their session
(``at_others``): from the sender's start (wall clock) to each other client's receipt
of the first event whose version is at least the answer's. The sender's own receipt
is one sample per answer, at a random place in the room's fan-out; the others give
one per answer and player, the issue's "answer -> leaderboard at the other players"
itself. Its p99 still rests on the few slowest answers, each at every receiver's
place in the fan-out (``at_others_summary`` counts them). Wall clocks of the
generator's processes are compared there (one machine, one clock).

Unmatched answers of either kind at the end are ``missing``: expected but never
delivered. Broadcast completeness (every client got every snapshot of its
session) is checked separately from the versions each client received.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from loadtests.stats import summary

# Events whose hop trace is kept (an answer's reply may come after the event that
# reflects it, so the newest few are looked at again when the reply arrives).
_TRACES_KEPT = 8


def add_hop(hops: dict[str, list[float]], name: str, start: float, end: float) -> None:
    """One sample of hop ``name`` (ms), when both ends were recorded (0 = not)."""
    if start > 0 and end > 0:
        hops.setdefault(name, []).append(end - start)


def server_hops(t: dict[str, int]) -> tuple[tuple[str, int, int], ...]:
    """The hops of a ``HopTrace`` (as received) from the quiz service's arrival to the
    consumer's emit: (name, start, end) wall clock ms, 0 where not recorded."""
    acked = t.get("acked_ms", 0)
    return (
        ("arrive_commit", t.get("arrived_ms", 0), t.get("committed_ms", 0)),
        ("commit_produce", t.get("committed_ms", 0), t.get("produced_ms", 0)),
        ("produce_ack", t.get("produced_ms", 0), acked),
        ("ack_read", acked or t.get("produced_ms", 0), t.get("read_ms", 0)),
        ("read_emit", t.get("read_ms", 0), t.get("emitted_ms", 0)),
    )


@dataclass(slots=True)
class _Pending:
    t_sent: float
    version: int  # > 0: match by version; 0: match by score
    score: int
    visible: bool = True  # the reply put the player in the top 10 (the board shows it)


@dataclass(slots=True)
class Received:
    t_mono: float
    t_wall: float
    version: int
    my_score: int | None  # this player's score in the event's entries, None when absent
    tenth_score: int | None  # the 10th entry's score, None when fewer than 10 entries
    trace: dict[str, int] | None = None  # the event's hop trace (the newest events only)


@dataclass
class LeaderboardTracker:
    """One client's leaderboard events and its answers awaiting their snapshot."""

    user_id: str
    ack_version: int = 0
    events: list[Received] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    # The subset of answers whose reply ranked the player in the top 10: the ones
    # that change what the board shows (the others ride with a later snapshot).
    visible_ms: list[float] = field(default_factory=list)
    # The hops of those answers (ms, per hop name; the bench passes one dict shared by
    # the players of a process).
    top10_hops: dict[str, list[float]] = field(default_factory=dict)
    pending: list[_Pending] = field(default_factory=list)
    by_method: dict[str, int] = field(default_factory=lambda: {"version": 0, "score": 0})
    skipped: int = 0  # accepted answers the score method cannot measure (wrong, or rank > 10)

    def on_leaderboard(self, payload: dict[str, Any], t_mono: float, t_wall: float) -> None:
        """Record one ``leaderboard`` event and resolve the answers it reflects."""
        entries: list[dict[str, Any]] = payload.get("entries") or []
        my_score = None
        for e in entries:
            if e["user_id"] == self.user_id:
                my_score = e["score"]
                break
        tenth = entries[9]["score"] if len(entries) >= 10 else None
        trace = payload.get("trace")
        ev = Received(
            t_mono, t_wall, int(payload["version"]), my_score, tenth,
            trace if isinstance(trace, dict) else None,
        )  # fmt: skip
        self.events.append(ev)
        if len(self.events) > _TRACES_KEPT:
            self.events[-_TRACES_KEPT - 1].trace = None
        if self.pending:
            still = []
            for p in self.pending:
                # An event decoded late (loadtests.client.Deferred) may have arrived
                # before the answer was sent: only a later one can reflect it.
                if ev.t_mono >= p.t_sent and _reflects(ev, p):
                    self._timed(p, ev)
                else:
                    still.append(p)
            self.pending = still

    def on_answer(self, t_sent: float, reply: dict[str, Any]) -> int:
        """Register an accepted answer (its reply) sent at ``t_sent``. Returns its
        board version when the reply ranked the player in the top 10 (the answers
        ``at_others`` times), else 0."""
        version = int(reply.get("version") or 0)
        score = int(reply["score"])
        if version <= 0 and not (reply.get("points", 0) > 0 and reply.get("rank", 99) <= 10):
            self.skipped += 1
            return 0
        p = _Pending(t_sent, version, score, int(reply.get("rank") or 99) <= 10)
        self.by_method["version" if version > 0 else "score"] += 1
        # The event may have come before the reply: look at what arrived since t_sent.
        for ev in self.events:
            if ev.t_mono >= t_sent and _reflects(ev, p):
                self._timed(p, ev)
                break
        else:
            self.pending.append(p)
        return version if p.visible else 0

    def _timed(self, p: _Pending, ev: Received) -> None:
        ms = (ev.t_mono - p.t_sent) * 1000.0
        self.latencies_ms.append(ms)
        if not p.visible:
            return
        self.visible_ms.append(ms)
        t = ev.trace
        if t is None:
            return
        got = ev.t_wall * 1000.0
        sent = got - ms  # the same instant on the wall clock
        emitted = t.get("emitted_ms", 0)
        # Every such answer: its wait for the room event, then the fan-out.
        add_hop(self.top10_hops, "send_emit", sent, emitted)
        add_hop(self.top10_hops, "emit_client", emitted, got)
        if p.version <= 0 or ev.version != p.version:
            return  # the snapshot's trace is another answer's
        if t.get("arrived_ms", 0) < sent - 1:
            # An older answer's trace: its snapshot (held, say) was read after this
            # answer's write, so it has this answer's version.
            return
        for name, a, b in (("send_arrive", sent, t.get("arrived_ms", 0)), *server_hops(t)):
            add_hop(self.top10_hops, name, a, b)

    def outcome(self) -> dict[str, int]:
        """Counts: expected, delivered, missing, displaced (see the module docstring)."""
        displaced = 0
        last = self.events[-1] if self.events else None
        for p in self.pending:
            if (
                p.version == 0
                and last is not None
                and last.tenth_score is not None
                and last.my_score is None
                and last.tenth_score >= p.score
            ):
                displaced += 1
        expected = len(self.latencies_ms) + len(self.pending) - displaced
        return {
            "expected": expected,
            "delivered": len(self.latencies_ms),
            "missing": len(self.pending) - displaced,
            "displaced": displaced,
            "by_version": self.by_method["version"],
            "by_score": self.by_method["score"],
            "skipped": self.skipped,
        }

    def versions_after(self, v0: int) -> set[int]:
        """The snapshot versions this client received that are newer than ``v0``."""
        return {e.version for e in self.events if e.version > v0}


def _reflects(ev: Received, p: _Pending) -> bool:
    if p.version > 0:
        return ev.version >= p.version
    return ev.my_score is not None and ev.my_score >= p.score


# A top-10 answer, as ``at_others`` takes it: (session id, board version, wall clock
# second its sender started sending it, the sender's user id).
SentAnswer = tuple[str, int, float, str]


def at_others(
    answers: Iterable[SentAnswer], trackers: Iterable[tuple[str, LeaderboardTracker]]
) -> list[list[float]]:
    """Answer -> leaderboard (ms) at every other player, one list per answer (in the
    answers' order): for each tracker (with its session id) of the answer's session but
    not its sender, the first receipt of an event of at least the answer's version,
    after the send."""
    by_session: dict[str, list[tuple[str, list[int], list[float], bool]]] = {}
    for sid, t in trackers:
        versions = [e.version for e in t.events]  # in arrival order
        walls = [e.t_wall for e in t.events]
        ordered = all(a <= b for a, b in itertools.pairwise(versions))
        by_session.setdefault(sid, []).append((t.user_id, versions, walls, ordered))
    out: list[list[float]] = []
    for sid, version, t_sent, sender in answers:
        mine: list[float] = []
        out.append(mine)
        for uid, versions, walls, ordered in by_session.get(sid, ()):
            if uid == sender:
                continue
            # Events come in version order (the server's promise; checked elsewhere),
            # so the first one of at least this version is found by bisection.
            i = bisect.bisect_left(versions, version) if ordered else 0
            for k in range(i, len(versions)):
                if versions[k] >= version and walls[k] >= t_sent:
                    mine.append(round((walls[k] - t_sent) * 1000.0, 2))
                    break
    return out


def at_others_summary(per_answer: list[list[float]]) -> dict:
    """``summary`` of every answer's samples at the others, with how many answers had
    samples (``answers``) and how many of them reach the p99 (``answers_at_p99``: a
    room's p99 is often a few answers' wait, whatever the sample count)."""
    out = summary(x for xs in per_answer for x in xs)
    p99 = out["p99"]
    out["answers"] = sum(1 for xs in per_answer if xs)
    out["answers_at_p99"] = (
        0 if p99 is None else sum(1 for xs in per_answer if xs and max(xs) >= p99)
    )
    return out
