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

Unmatched answers of either kind at the end are ``missing``: expected but never
delivered. Broadcast completeness (every client got every snapshot of its
session) is checked separately from the versions each client received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
        ev = Received(t_mono, t_wall, int(payload["version"]), my_score, tenth)
        self.events.append(ev)
        if self.pending:
            still = []
            for p in self.pending:
                # An event decoded late (loadtests.client.Deferred) may have arrived
                # before the answer was sent: only a later one can reflect it.
                if ev.t_mono >= p.t_sent and _reflects(ev, p):
                    self._timed(p, (t_mono - p.t_sent) * 1000.0)
                else:
                    still.append(p)
            self.pending = still

    def on_answer(self, t_sent: float, reply: dict[str, Any]) -> None:
        """Register an accepted answer (its reply) sent at ``t_sent``."""
        version = int(reply.get("version") or 0)
        score = int(reply["score"])
        if version <= 0 and not (reply.get("points", 0) > 0 and reply.get("rank", 99) <= 10):
            self.skipped += 1
            return
        p = _Pending(t_sent, version, score, int(reply.get("rank") or 99) <= 10)
        self.by_method["version" if version > 0 else "score"] += 1
        # The event may have come before the reply: look at what arrived since t_sent.
        for ev in self.events:
            if ev.t_mono >= t_sent and _reflects(ev, p):
                self._timed(p, (ev.t_mono - t_sent) * 1000.0)
                return
        self.pending.append(p)

    def _timed(self, p: _Pending, ms: float) -> None:
        self.latencies_ms.append(ms)
        if p.visible:
            self.visible_ms.append(ms)

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
