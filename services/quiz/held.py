"""Held results: a live session may keep each player's result until the question closes.

The answer reply says at once whether an answer was right, and the live board moves
with every right answer; so k-1 throwaway guests answering one choice each tell a
main account the answer while the question is still open. A session created with
``hold_results: true`` closes that leak the way Kahoot does between questions:

- the reply to an answer for the open question is *held*: ``held: true``,
  ``correct: false``, 0 points, the score before it, rank 0 (the stored reply is
  the full one, returned to a repeat once the question has closed);
- the answer is not written to the Redis board while the question is open, so the
  board (``leaderboard`` events, ``GET .../top``, the join ack) stands still;
- when the question closes (the host advances, or its deadline passes) the board
  is rebuilt from PostgreSQL and sent to the room as a ``leaderboard`` event.

Sessions without the option keep the live board. Self-paced sessions cannot hold
(each player has their own clock: a guest's result after its own deadline still
tells a main account that has not started the question).
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from typing import Any

import msgspec
from redis.asyncio import Redis

from contracts import AnswerResult, RoomLeaderboard
from services.board import ranking
from services.board.rebuild import rebuild_board

log = logging.getLogger("quizrt.quiz.held")

_reply = msgspec.json.Decoder(AnswerResult)
_encoder = msgspec.json.Encoder()
# session id -> hold_results (fixed at creation, so cached without expiry)
_holds: OrderedDict[uuid.UUID, bool] = OrderedDict()
_HOLDS_MAX = 50_000


async def holds(conn: Any, sid: uuid.UUID) -> bool:
    """Whether the session holds results (one PostgreSQL read per session and process)."""
    hit = _holds.get(sid)
    if hit is None:
        hit = bool(await conn.fetchval("SELECT hold_results FROM quiz_session WHERE id = $1", sid))
        _holds[sid] = hit
        if len(_holds) > _HOLDS_MAX:
            _holds.popitem(last=False)
    return hit


def is_open(row: Any, index: int, now: int, grace_ms: int) -> bool:
    """Whether question ``index`` of the session ``row`` (mode, state, current_index,
    deadline_ms) is still open for answers at ``now``."""
    return (
        row["mode"] == "live"
        and row["state"] == "running"
        and index == row["current_index"]
        and row["deadline_ms"] is not None
        and now <= row["deadline_ms"] + grace_ms
    )


def held_reply(body: bytes) -> bytes:
    """The held form of an answer reply: nothing in it tells whether it was right."""
    r = _reply.decode(body)
    return _encoder.encode(
        AnswerResult(
            question_id=r.question_id,
            correct=False,
            points=0,
            score=r.score - r.points,
            rank=0,
            elapsed_ms=r.elapsed_ms,
            held=True,
        )
    )


async def release(conn: Any, redis: Redis, sid: uuid.UUID, emit: Any) -> None:
    """A question of ``sid`` closed: when it holds results, put every total on the
    board (rebuilt from PostgreSQL, a new version) and send it to the room."""
    if not await holds(conn, sid):
        return
    session_id = str(sid)
    try:
        await rebuild_board(redis, session_id)
        snap = await ranking.read_snapshot(redis, session_id, 10)
    except Exception as e:  # the board is marked for the consumer's rebuild instead
        log.warning("could not release the held board of %s: %s", session_id, e)
        await conn.execute("UPDATE quiz_session SET board_dirty = true WHERE id = $1", sid)
        return
    if snap is not None:
        board = RoomLeaderboard(
            session_id=session_id, version=snap.version, players=snap.players, entries=snap.entries
        )
        await emit("leaderboard", board, session_id)
