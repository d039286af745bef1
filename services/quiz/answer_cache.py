"""What a quiz process remembers of the sessions and players it scored, so that a
batch of answers usually skips its read: one PostgreSQL round trip per batch (the
write) instead of two.

A player's answers come to the same quiz process (nginx hashes the upstream on the
token), so after a player's first answer this process knows the player's row as it
left it (total, streak, last answered index, when the total was reached), the
session's state (mode, open question, its deadline) from the last read of it, and,
self-paced, when each question was handed to the player (``handout`` in this
process). ``row`` gives that as the batch's read would have.

Nothing here is trusted on its own:

- only an answer the remembered state would *accept* skips the read; anything it
  would refuse (a repeat, a closed question, a deadline) is read from PostgreSQL
  and answered from there, as before;
- the write of a remembered answer applies only where PostgreSQL still holds what
  was remembered: the player's ``last_index`` (every accepted answer moves it, so
  an answer taken by the other quiz process shows) and the session's state, open
  question and deadline (a host who advanced through the other process shows);
  otherwise the answer is not written, goes into the next batch (``Retry``), and
  that batch reads it, as an answer whose player changed meanwhile always did;
- what was not written is forgotten, and every read refreshes what it read.

Bounded: past ``max_players`` entries everything is forgotten at once (a read per
player refills it).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from services.common.metrics import Counter

SESSION_FIELDS = (
    "state",
    "mode",
    "current_index",
    "question_opened_ms",
    "deadline_ms",
    "quiz_id",
    "created_ms",
    "hold_results",
)

REMEMBERED = Counter(
    "quizrt_answers_without_read",
    "Answers scored from what this process remembered (their batch skipped the read)",
)


class _Player(msgspec.Struct):
    score: int
    streak: int
    last_index: int
    nickname: str
    reached_ms: int


class AnswerCache:
    def __init__(self, max_players: int = 200_000):
        self.max_players = max_players
        self._sessions: dict[uuid.UUID, dict[str, Any]] = {}
        self._players: dict[tuple[uuid.UUID, str], _Player] = {}
        self._handed: dict[tuple[uuid.UUID, str, str], int] = {}

    def row(self, session_id: uuid.UUID, user_id: str, question_id: str) -> dict | None:
        """The batch read's row for this answer from memory, or None (read it)."""
        session = self._sessions.get(session_id)
        player = self._players.get((session_id, user_id))
        if session is None or player is None:
            return None
        handed = None
        if session["mode"] != "live":
            handed = self._handed.get((session_id, user_id, question_id))
            if handed is None:
                return None
        return {
            "found": True,
            "joined": True,
            "score": player.score,
            "streak": player.streak,
            "last_index": player.last_index,
            "nickname": player.nickname,
            "reached_ms": player.reached_ms,
            **session,
            "handed_ms": handed,
            "reply": None,
        }

    def read(self, session_id: uuid.UUID, user_id: str, question_id: str, row: Any) -> None:
        """Remember what the batch read found (a joined player of an existing session)."""
        if not (row["found"] and row["joined"]):
            return
        self._sessions[session_id] = {f: row[f] for f in SESSION_FIELDS}
        self._remember(
            (session_id, user_id),
            _Player(
                row["score"], row["streak"], row["last_index"], row["nickname"], row["reached_ms"]
            ),
        )
        if row["handed_ms"] is not None:
            self._handed[(session_id, user_id, question_id)] = row["handed_ms"]

    def written(
        self,
        session_id: uuid.UUID,
        user_id: str,
        total: int,
        streak: int,
        index: int,
        nickname: str,
        reached_ms: int,
    ) -> None:
        """The player's row as this process's committed answer left it."""
        self._remember((session_id, user_id), _Player(total, streak, index, nickname, reached_ms))

    def handed(self, session_id: uuid.UUID, user_id: str, question_id: str, handed_ms: int) -> None:
        """A self-paced question was handed to the player at ``handed_ms`` (never changes)."""
        self._handed[(session_id, user_id, question_id)] = handed_ms
        if len(self._handed) > 4 * self.max_players:
            self._handed.clear()

    def forget_player(self, session_id: uuid.UUID, user_id: str) -> None:
        self._players.pop((session_id, user_id), None)

    def forget_session(self, session_id: uuid.UUID) -> None:
        """The session's state changed (this process advanced or closed it)."""
        self._sessions.pop(session_id, None)

    def _remember(self, key: tuple[uuid.UUID, str], player: _Player) -> None:
        if key not in self._players and len(self._players) >= self.max_players:
            self._players.clear()
            self._sessions.clear()
        self._players[key] = player


answer_cache = AnswerCache()
