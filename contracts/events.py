"""Kafka events and socket.io events (``docs/protocol.md``)."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from contracts.http import LeaderboardEntry, State

__all__ = [
    "SCHEMA_VERSION",
    "ErrorAck",
    "HopTrace",
    "JoinAck",
    "JoinRoom",
    "LeaveRoom",
    "QuestionClosed",
    "QuestionOpened",
    "RoomLeaderboard",
    "ScoreChange",
    "SessionEnded",
    "SessionStateChanged",
    "TokenExpired",
    "Top10",
    "decode_score_change",
    "decode_top10",
    "to_payload",
]

SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- Kafka


class ScoreChange(Struct, frozen=True, kw_only=True):
    """SCORE_CHANGE, key = session id: one accepted answer."""

    schema_version: int = SCHEMA_VERSION
    answer_id: str
    session_id: str
    user_id: str
    nickname: str
    question_id: str
    correct: bool
    points: int
    total: int
    answered_ms: int  # when the answer arrived at the quiz service (server clock, ms)
    # Latency budget per hop (wall clock ms, 0 = not recorded): when the answer's
    # transaction committed, and when the outbox relay handed the record to Kafka.
    committed_ms: int = 0
    produced_ms: int = 0
    # The player's rank on the board right after this answer's write (0 = not known:
    # the board was not written, or results are held). Totals only grow, so an answer
    # ranked below 10 leaves the top 10 as it was: the consumer need not read the
    # board for it at once.
    rank: int = 0


class Top10(Struct, frozen=True, kw_only=True):
    """TOP_10 (compacted), key = session id: the latest snapshot of a session."""

    schema_version: int = SCHEMA_VERSION
    session_id: str
    version: int
    players: int
    entries: list[LeaderboardEntry]
    produced_ms: int


_score_change = msgspec.json.Decoder(ScoreChange)
_top10 = msgspec.json.Decoder(Top10)


def decode_score_change(raw: bytes) -> ScoreChange:
    return _score_change.decode(raw)


def decode_top10(raw: bytes) -> Top10:
    return _top10.decode(raw)


# --------------------------------------------------------------------------- socket.io
# client -> server


class JoinRoom(Struct, frozen=True, forbid_unknown_fields=False):
    session_id: str


class LeaveRoom(Struct, frozen=True, forbid_unknown_fields=False):
    session_id: str


# server -> client (acks)


class JoinAck(Struct, kw_only=True):
    ok: bool = True
    state: State
    leaderboard: RoomLeaderboard
    mode: str = ""
    role: str = ""
    question: QuestionOpened | None = None


class ErrorAck(Struct, omit_defaults=True):
    ok: bool
    error: str
    # Present when the refusal is temporary: try the same call again after this long.
    retry_after_ms: int | None = None


class TokenExpired(Struct, kw_only=True):
    """`token_expired` (server -> one socket): its access token expired at ``exp``
    (Unix seconds); the server disconnects the socket right after. The client renews
    its token (refresh), reconnects and joins its room again."""

    exp: int
    detail: str = "access token expired: refresh it and reconnect"


# server -> room


class HopTrace(Struct, kw_only=True):
    """Where the newest answer behind a snapshot spent its time (wall clock ms).

    ``arrived`` at the quiz service, ``committed`` to PostgreSQL, ``produced`` to
    Kafka (handed to the producer), ``acked`` by Kafka, ``read`` by the leaderboard
    consumer, ``emitted`` to the room. A client subtracts ``emitted`` from its own
    receipt time (same machine) for the last hop. 0 = not recorded.
    """

    arrived_ms: int = 0
    committed_ms: int = 0
    produced_ms: int = 0
    acked_ms: int = 0
    read_ms: int = 0
    emitted_ms: int = 0


class RoomLeaderboard(Struct, kw_only=True, omit_defaults=True):
    """`leaderboard`: the session's top 10; clients keep the highest version."""

    session_id: str
    version: int
    players: int
    entries: list[LeaderboardEntry]
    # The newest source answer's path through the pipeline (absent on snapshots that
    # no answer caused, e.g. a rebuild or a join ack).
    trace: HopTrace | None = None


class QuestionOpened(Struct, kw_only=True):
    """`question` (live mode): the answer is never in it."""

    session_id: str
    question_id: str
    index: int
    count: int
    text: str
    choices: list[str]
    time_limit_s: int
    deadline_ms: int
    server_time_ms: int


class QuestionClosed(Struct, kw_only=True):
    """`question_closed`: the answer and how many chose each choice."""

    session_id: str
    question_id: str
    answer: int
    distribution: list[int]
    index: int = 0


class SessionStateChanged(Struct, kw_only=True):
    """`session_state`: players joined or the state changed."""

    session_id: str
    state: State
    players: int
    question_index: int = -1
    version: int = 0
    """The board version ``players`` was read at (the `leaderboard` event's version
    space; 0: unknown). Joins through different quiz processes can arrive out of
    order: a client keeps the count of the newest version it has seen, from this
    event or a `leaderboard` one."""


class SessionEnded(Struct, kw_only=True):
    """`session_ended`: the final top 10."""

    session_id: str
    players: int
    entries: list[LeaderboardEntry]


SOCKET_EVENTS: dict[str, type[Struct]] = {
    "leaderboard": RoomLeaderboard,
    "question": QuestionOpened,
    "question_closed": QuestionClosed,
    "session_state": SessionStateChanged,
    "session_ended": SessionEnded,
}
"""Server -> room events by name (the socket.io event name is the key)."""


def to_payload(event: Struct) -> dict[str, Any]:
    """A socket.io payload (plain builtins) from an event Struct."""
    return msgspec.to_builtins(event)
