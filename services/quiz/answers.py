"""The hot path: one answer, scored once, durable with its SCORE_CHANGE outbox row.

Round trips per answer, whatever the number of players: PostgreSQL BEGIN, one
SELECT (locks the player's row), one Redis pipeline, one INSERT/UPDATE statement,
COMMIT. The player's row lock serializes that player's concurrent submissions; the
unique key on (session, user, question) makes a second scoring impossible; a repeat
gets the stored first reply, byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import msgspec
from redis.asyncio import Redis

from contracts import AnswerIn, AnswerResult, ScoreChange
from services.common import db, ranking
from services.common.auth import Caller
from services.common.redis import get_redis
from services.common.settings import get_settings
from services.quiz import held
from services.quiz.content import load_quiz, parse_id
from services.quiz.errors import Conflict, Forbidden, NotFound
from services.quiz.scoring import score_answer
from services.quiz.sessions import GRACE_MS

log = logging.getLogger("quizrt.quiz.answers")

_reply = msgspec.json.Decoder(AnswerResult)

_READ = """
SELECT sp.score, sp.streak, sp.last_index, sp.nickname, sp.reached_ms,
       s.state, s.mode, s.current_index, s.question_opened_ms, s.deadline_ms, s.quiz_id,
       s.created_ms, h.handed_ms, a.reply::text AS reply
FROM session_player sp
JOIN quiz_session s ON s.id = sp.session_id
LEFT JOIN handout h
  ON h.session_id = sp.session_id AND h.user_id = sp.user_id AND h.question_id = $3
LEFT JOIN answer a
  ON a.session_id = sp.session_id AND a.user_id = sp.user_id AND a.question_id = $3
WHERE sp.session_id = $1 AND sp.user_id = $2
FOR UPDATE OF sp
"""

# $1 answer id, $2 session, $3 user, $4 question id, $5 index, $6 choice, $7 correct,
# $8 points, $9 elapsed, $10 new total, $11 answered_ms, $12 reply, $13 streak,
# $14 reached_ms, $15 topic, $16 payload, $17 board missed this write
_WRITE = """
WITH answer_row AS (
  INSERT INTO answer (id, session_id, user_id, question_id, question_index, choice, correct,
                      points, elapsed_ms, score_after, answered_ms, reply)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
), player AS (
  UPDATE session_player
     SET score = $10, streak = $13, last_index = $5, reached_ms = $14,
         correct_count = correct_count + CASE WHEN $7 THEN 1 ELSE 0 END
   WHERE session_id = $2 AND user_id = $3
), dirty AS (
  UPDATE quiz_session SET board_dirty = true WHERE id = $2 AND $17 AND NOT board_dirty
)
INSERT INTO outbox (topic, key, payload) VALUES ($15, $2::text, $16) RETURNING id
"""

_RANK_IN_POSTGRES = """
SELECT count(*) FILTER (WHERE score > $2 OR (score = $2 AND reached_ms < $3)) + 1 AS rank
FROM session_player WHERE session_id = $1
"""


class Accepted(msgspec.Struct, frozen=True):
    """What the controller sends back: the reply's exact bytes, and the outbox row to
    hand to the relay (None for a repeat)."""

    body: bytes
    outbox_id: int | None


def encode_reply(result: AnswerResult) -> bytes:
    return msgspec.json.encode(result)


def stored_reply(text: str) -> bytes:
    """The first reply again. PostgreSQL's jsonb normalizes spacing and key order, so
    the stored JSON is decoded and encoded the way the first reply was: same bytes."""
    return encode_reply(_reply.decode(text))


async def submit_answer(
    conn: Any, redis: Redis, caller: Caller, session_id: str, data: AnswerIn, now: int
) -> Accepted:
    """Score one answer; ``now`` is when the request arrived (server clock, ms).

    Raises NotFound (no such session), Forbidden (not joined), Conflict (not running,
    not the open question, not handed out, past the deadline).
    """
    sid = parse_id(session_id, "session")
    board = _BoardWrite()
    try:
        async with conn.transaction():
            return await _score(conn, redis, caller, sid, data, now, board)
    except Exception:
        if board.written:
            await _mark_dirty_after_failure(sid)
        raise


# Submissions of one player's answer to one question now in flight in this process.
_in_flight: dict[tuple[str, str, str], asyncio.Future[Accepted]] = {}


async def submit_once(caller: Caller, session_id: str, data: AnswerIn, now: int) -> Accepted:
    """``submit_answer`` with concurrent repeats of one answer joined into one.

    A client that fires the same answer many times at once (a retry loop, a double
    tap, or malice) would otherwise make each copy hold a pooled connection while it
    queues on the player's row lock, starving other players. Copies that arrive while
    the first is in flight in this process wait for its result instead; the database
    still guarantees one answer per player and question across processes.
    """
    key = (session_id, caller.user_id, data.question_id)
    pending = _in_flight.get(key)
    if pending is not None:
        first = await asyncio.shield(pending)
        return Accepted(first.body, None)  # a repeat: the relay was notified once
    future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
    _in_flight[key] = future
    try:
        async with db.connection() as conn:
            accepted = await submit_answer(conn, get_redis(), caller, session_id, data, now)
    except BaseException as e:
        future.set_exception(e)
        future.exception()  # mark retrieved: nobody may be waiting
        raise
    else:
        future.set_result(accepted)
        return accepted
    finally:
        del _in_flight[key]


class _BoardWrite:
    """Whether this attempt already wrote the player's new total to Redis."""

    written = False


async def _mark_dirty_after_failure(sid: uuid.UUID) -> None:
    """The board got a total that was not committed: have it rebuilt (best effort)."""
    try:
        async with db.connection() as conn:
            await conn.execute("UPDATE quiz_session SET board_dirty = true WHERE id = $1", sid)
    except Exception as e:
        log.error(
            "session %s: board may show an uncommitted total until its next rebuild: %s", sid, e
        )


async def _score(
    conn: Any,
    redis: Redis,
    caller: Caller,
    sid: uuid.UUID,
    data: AnswerIn,
    now: int,
    board: _BoardWrite,
) -> Accepted:
    session_id = str(sid)  # canonical form: Redis keys and the Kafka key use it
    uid = uuid.UUID(caller.user_id)
    row = await conn.fetchrow(_READ, sid, uid, data.question_id)
    if row is None:
        if await conn.fetchval("SELECT 1 FROM quiz_session WHERE id = $1", sid):
            raise Forbidden("Join the session first")
        raise NotFound("No such session")
    hold = row["mode"] == "live" and await held.holds(conn, sid)
    if row["reply"] is not None and not hold:
        return Accepted(stored_reply(row["reply"]), None)
    quiz = await load_quiz(conn, row["quiz_id"])
    assert quiz is not None
    index = quiz.index_of.get(data.question_id)
    # Held results: while the question is open, replies (repeats too) are held.
    holding = hold and index is not None and held.is_open(row, index, now, GRACE_MS)
    if row["reply"] is not None:
        return Accepted(_as_held(stored_reply(row["reply"]), holding), None)
    if row["state"] != "running":
        raise Conflict("The session is not running")
    if index is None:
        raise Conflict("That question is not open for you")
    if index <= row["last_index"]:
        # Answered before (the row lock waited for that answer's commit, so this
        # statement's snapshot could not see its reply) or skipped: look again.
        reply = await conn.fetchval(
            "SELECT reply::text FROM answer WHERE session_id = $1 AND user_id = $2"
            " AND question_id = $3",
            sid,
            uid,
            data.question_id,
        )
        if reply is not None:
            return Accepted(_as_held(stored_reply(reply), holding), None)
        raise Conflict("That question is closed")
    q = quiz.questions[index]
    if row["mode"] == "live":
        if index != row["current_index"]:
            raise Conflict("That question is not open")
        opened, deadline = row["question_opened_ms"], row["deadline_ms"]
    else:
        if row["handed_ms"] is None:
            raise Conflict("That question was not given to you")
        opened = row["handed_ms"]
        deadline = opened + q.time_limit_s * 1000
    if now > deadline + GRACE_MS:
        raise Conflict("Past the deadline")
    elapsed = max(now - opened, 0)
    correct = data.choice == q.answer
    streak_before = row["streak"] if index == row["last_index"] + 1 else 0
    points, streak = score_answer(correct, elapsed, q.time_limit_s, q.points, streak_before)
    total = row["score"] + points
    reached = now - row["created_ms"] if points > 0 else row["reached_ms"]

    # The board first, so the stored reply carries the rank. The write is absolute; if
    # the commit fails after it, the caller marks the board dirty for a rebuild.
    board_missed = False
    version = 0  # the board version this answer produced; 0 when the board is unchanged
    try:
        # Held results: the board stands still until the question closes; the stored
        # reply (returned once it closed) takes its rank from PostgreSQL.
        known = (
            (await conn.fetchval(_RANK_IN_POSTGRES, sid, total, reached), 0, 0)
            if holding
            else None
            if points > 0
            else await ranking.read_rank(redis, session_id, caller.user_id)
        )
        if known is None:
            board.written = True
            rank, _, version = await ranking.write_score(
                redis, session_id, caller.user_id, total, reached, nickname=row["nickname"]
            )
        else:
            rank = known[0]
    except Exception as e:
        log.warning("board write failed for session %s (will rebuild): %s", session_id, e)
        board_missed = True
        rank = await conn.fetchval(_RANK_IN_POSTGRES, sid, total, reached)

    answer_id = uuid.uuid4()
    body = encode_reply(
        AnswerResult(
            question_id=q.id,
            correct=correct,
            points=points,
            score=total,
            rank=rank,
            streak=streak,
            elapsed_ms=elapsed,
            version=version,
        )
    )
    event = msgspec.json.encode(
        ScoreChange(
            answer_id=str(answer_id),
            session_id=session_id,
            user_id=caller.user_id,
            nickname=row["nickname"],
            question_id=q.id,
            correct=correct,
            points=points,
            total=total,
            answered_ms=now,
        )
    )
    outbox_id = await conn.fetchval(
        _WRITE,
        answer_id,
        sid,
        uid,
        q.id,
        index,
        data.choice,
        correct,
        points,
        elapsed,
        total,
        now,
        body.decode(),
        streak,
        reached,
        get_settings().topic_score_change,
        event,
        board_missed,
    )
    return Accepted(_as_held(body, holding), outbox_id)


def _as_held(body: bytes, holding: bool) -> bytes:
    return held.held_reply(body) if holding else body
