"""The one simulated player's core: what every simulated client of the project does the
same way, whatever it sends with.

Four clients play a guest: ``tests/support/player.py`` (python-socketio, for asserts),
``tests/chaos/player.py`` (httpx and python-socketio, the fault harness),
``loadtests/players.py`` (the bench's lean asyncio clients) and ``loadtests/locustfile.py``
(Locust, under gevent). Their transports differ on purpose (a generic client costs the
load generator several times the CPU; Locust brings its own), but where their needs meet
they share this module:

* ``Retry``: which refusals a careful client sends again (429 and 5xx, a dropped
  connection, a socket ack with ``retry_after_ms``) and how long it waits: the longer of
  its own backoff and what the server asked (``Retry-After``, ``retry_after_ms``).
* ``join_reply``: what a socket ``join`` ack says (accepted, the snapshot version it
  carries, or when to try again).
* ``AnswerBook``: what the client saw accepted (the first 200 reply per question),
  refused or left undecided, and repeats whose reply differed.
* ``BoardView``: the ``leaderboard`` snapshots one client received for its session (the
  newest version wins; one of another session is a leak).

It does no I/O and imports nothing of the project: the caller sends, then asks it what
to do. It lives in ``loadtests/`` because the load generator must not import ``tests/``;
the tests import it from here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Statuses a client sends again: the request was not (or may not have been) handled.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_after_s(value: object) -> float | None:
    """A ``Retry-After`` header value (seconds) as a number, None when absent or odd."""
    if value is None or value == "":
        return None
    try:
        return max(0.0, float(str(value)))
    except ValueError:
        return None


class Retry:
    """When to send a refused call again, for one call.

    ``again(status, hint)`` after each reply (``status`` None: the connection failed):
    False when the reply is final (not in ``RETRY_STATUSES``) or when the budget is
    spent (then ``gave_up`` is set); True with ``wait`` set to the seconds to sleep
    first: the longer of a doubling backoff (``first`` up to ``most``, with jitter
    when ``jitter``) and the server's ``hint`` (seconds, capped at ``most_hint``).
    """

    def __init__(
        self,
        *,
        first: float = 0.05,
        most: float = 1.0,
        give_up_after: float = 25.0,
        tries: int | None = None,
        most_hint: float | None = None,
        jitter: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.delay = first
        self.most = most
        self.most_hint = most_hint
        self.jitter = jitter
        self.tries_left = tries
        self.clock = clock
        self.deadline = clock() + give_up_after
        self.wait = 0.0
        self.gave_up = False
        self.retried = 0

    @staticmethod
    def retryable(status: int | None) -> bool:
        return status is None or status in RETRY_STATUSES

    def again(self, status: int | None, hint: float | None = None) -> bool:
        if not self.retryable(status):
            return False
        wait = self.delay * (random.uniform(0.5, 1.0) if self.jitter else 1.0)
        if hint is not None:
            wait = max(wait, hint if self.most_hint is None else min(hint, self.most_hint))
        if self.tries_left is not None:
            self.tries_left -= 1
        if (self.tries_left is not None and self.tries_left <= 0) or (
            self.clock() + wait > self.deadline
        ):
            self.gave_up = True
            return False
        self.wait = wait
        self.delay = min(self.delay * 2, self.most)
        self.retried += 1
        return True


@dataclass
class JoinReply:
    """A socket ``join`` ack, read: accepted or not, and what it carries."""

    ok: bool
    version: int = 0  # the snapshot version in the ack, 0 when none
    board: dict[str, Any] | None = None
    error: str = ""
    retry_after: float | None = None  # seconds; set when the refusal is temporary


def join_reply(ack: object) -> JoinReply:
    if not isinstance(ack, dict):
        return JoinReply(ok=False, error=f"not an ack: {ack!r}")
    hint = ack.get("retry_after_ms")
    retry_after = hint / 1000 if isinstance(hint, int | float) else None
    if ack.get("ok") is not True:
        return JoinReply(ok=False, error=str(ack.get("error", "")), retry_after=retry_after)
    board = ack.get("leaderboard")
    board = board if isinstance(board, dict) else None
    return JoinReply(ok=True, version=int((board or {}).get("version") or 0), board=board)


@dataclass
class AnswerBook:
    """What one client knows of its answers: the first 200 reply per question."""

    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    accepted_at: dict[str, float] = field(default_factory=dict)  # monotonic, first 200
    refused: dict[str, int] = field(default_factory=dict)  # question -> final status
    undecided: set[str] = field(default_factory=set)  # gave up without a final reply
    reply_mismatches: list[str] = field(default_factory=list)  # repeats that disagree

    def record(
        self, question_id: str, replies: list[tuple[int, dict[str, Any] | None] | None]
    ) -> dict[str, Any] | None:
        """The replies to one answer sent ``len(replies)`` times ((status, body), None for
        a call given up); returns the accepted reply, or None when refused or undecided."""
        ok = [body for r in replies if r is not None and r[0] == 200 for body in [r[1] or {}]]
        other = [r[0] for r in replies if r is not None and r[0] != 200]
        if ok:
            first = ok[0]
            if any(body != first for body in ok[1:]) or other:
                self.reply_mismatches.append(f"{question_id}: replies {ok} statuses {other}")
            if question_id not in self.accepted:
                self.accepted[question_id] = first
                self.accepted_at[question_id] = time.monotonic()
            return first
        if other:
            self.refused[question_id] = other[0]
        else:
            self.undecided.add(question_id)
        return None

    @property
    def points(self) -> int:
        return sum(int(a["points"]) for a in self.accepted.values())


@dataclass
class Snapshot:
    """A leaderboard snapshot as a client received it."""

    t: float
    version: int
    players: int
    scores: dict[str, int]
    source: str  # "event" or "ack"


@dataclass
class BoardView:
    """The snapshots one client received for ``session_id``."""

    session_id: str
    snapshots: list[Snapshot] = field(default_factory=list)
    best: Snapshot | None = None

    def receive(self, board: dict[str, Any], source: str = "event") -> Snapshot | None:
        """Record one snapshot; None (nothing recorded) when it is another session's:
        a leak, which the caller reports."""
        if board.get("session_id") != self.session_id:
            return None
        snap = Snapshot(
            t=time.monotonic(),
            version=int(board["version"]),
            players=int(board["players"]),
            scores={e["user_id"]: int(e["score"]) for e in board["entries"]},
            source=source,
        )
        self.snapshots.append(snap)
        # Snapshots may arrive out of order: a client keeps the highest version.
        if self.best is None or snap.version > self.best.version:
            self.best = snap
        return snap
