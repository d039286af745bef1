"""Sessions' lifecycle: opening, joining, advancing live questions, and closing live
questions whose deadline passed.

PostgreSQL holds every session's state; Redis holds a copy for the socket.io tier
(``services.quiz.session_cache``) and the board. The other concerns of a session
live beside this module: room events (``announcements``), the question a player
answers now (``handout``) and the Redis restore (``restore``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from redis.asyncio import Redis

from contracts import (
    AdvanceResult,
    JoinIn,
    JoinResult,
    LeaderboardEntry,
    QuestionClosed,
    SessionCreated,
    SessionEnded,
    SessionIn,
    SessionStateChanged,
    State,
)
from services.board import ranking
from services.board.question import question_event
from services.common.auth import Caller
from services.common.clock import now_ms
from services.quiz import held
from services.quiz.announcements import emit, join_announcer
from services.quiz.answer_cache import answer_cache
from services.quiz.content import QuizContent, load_quiz, parse_id
from services.quiz.errors import Conflict, Forbidden, Invalid, NotFound
from services.quiz.join_codes import insert_session
from services.quiz.session_cache import SESSION_COLUMNS, cache_session

log = logging.getLogger("quizrt.quiz.sessions")

# Answers arriving this long after a live deadline still count (network delay); the
# deadline closer waits a little longer still, so an answer being accepted at the edge
# of the grace is committed before the distribution is counted.
GRACE_MS = 250
CLOSE_AFTER_MS = GRACE_MS + 250


async def _player_count(conn: Any, redis: Redis, session_id: uuid.UUID) -> tuple[int, int]:
    """(players, board version); version 0 when Redis could not say."""
    try:
        players, version = await ranking.read_players(redis, str(session_id))
        if version:
            return players, version
    except Exception:
        pass
    count = await conn.fetchval(
        "SELECT count(*) FROM session_player WHERE session_id = $1", session_id
    )
    return int(count), 0


async def _mark_dirty(conn: Any, session_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE quiz_session SET board_dirty = true WHERE id = $1 AND NOT board_dirty", session_id
    )


# --------------------------------------------------------------------------- opening


async def create_session(
    conn: Any, redis: Redis, caller: Caller, data: SessionIn
) -> SessionCreated:
    """Open a session of one's own quiz: live starts in the lobby, self-paced running."""
    quiz = await load_quiz(conn, parse_id(data.quiz_id, "quiz"))
    if quiz is None:
        raise NotFound("No such quiz")
    if quiz.owner_id != caller.user_id:
        raise Forbidden("Only the quiz's host may open a session of it")
    state: State = "lobby" if data.mode == "live" else "running"
    if data.hold_results and data.mode != "live":
        raise Invalid("Only live sessions can hold results", field="hold_results")
    sid, code = await insert_session(
        conn, uuid.UUID(quiz.id), uuid.UUID(caller.user_id), data.mode, state, now_ms()
    )
    if data.hold_results:
        await conn.execute("UPDATE quiz_session SET hold_results = true WHERE id = $1", sid)
    row = await conn.fetchrow(f"SELECT {SESSION_COLUMNS} FROM quiz_session WHERE id = $1", sid)
    await cache_session(redis, row, quiz)
    return SessionCreated(
        id=str(sid),
        code=code,
        mode=data.mode,
        state=state,
        quiz_id=quiz.id,
        hold_results=data.hold_results,
    )


# --------------------------------------------------------------------------- joining


async def join(conn: Any, redis: Redis, caller: Caller, data: JoinIn) -> JoinResult:
    """Join by code (a session not ended) or by id. Joining twice changes nothing.

    A new player goes on the board with 0 points, reached at the join time (so among
    players with 0, who joined first ranks higher), and the room hears `session_state`.
    """
    if data.session_id:
        row = await conn.fetchrow(
            f"SELECT {SESSION_COLUMNS} FROM quiz_session WHERE id = $1",
            parse_id(data.session_id, "session"),
        )
    elif data.code:
        row = await conn.fetchrow(
            f"SELECT {SESSION_COLUMNS} FROM quiz_session WHERE code = $1 AND state <> 'ended'",
            data.code.strip(),
        )
    else:
        raise Invalid("Give a join code or a session id", field="code")
    if row is None:
        raise NotFound("No such session")
    if str(row["host_id"]) == caller.user_id:
        raise Forbidden("The host cannot join as a player (watch through socket.io instead)")
    if row["state"] == "ended":
        raise Conflict("The session has ended")
    quiz = await load_quiz(conn, row["quiz_id"])
    assert quiz is not None  # a session's quiz always exists (foreign key)
    sid = row["id"]
    now = now_ms()
    reached = now - row["created_ms"]
    nickname = caller.nickname or "player"
    inserted = await conn.fetchval(
        "INSERT INTO session_player (session_id, user_id, nickname, joined_ms, reached_ms)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, user_id) DO NOTHING RETURNING id",
        sid,
        uuid.UUID(caller.user_id),
        nickname,
        now,
        reached,
    )
    if inserted is not None:
        try:
            _, players, version = await ranking.write_score(
                redis, str(sid), caller.user_id, 0, reached, nickname=nickname
            )
        except Exception as e:
            log.warning("board write failed for session %s (will rebuild): %s", sid, e)
            await _mark_dirty(conn, sid)
            players, version = await _player_count(conn, redis, sid)
        await cache_session(redis, row, quiz)
        await join_announcer.announce(
            SessionStateChanged(
                session_id=str(sid),
                state=row["state"],
                players=players,
                question_index=row["current_index"],
                version=version,
            ),
        )
    return JoinResult(
        session_id=str(sid),
        mode=row["mode"],
        state=row["state"],
        question_count=quiz.count,
        title=quiz.title,
    )


# --------------------------------------------------------------------------- live: advance


async def _distribution(
    conn: Any, session_id: uuid.UUID, quiz: QuizContent, index: int
) -> QuestionClosed:
    q = quiz.questions[index]
    counts = [0] * len(q.choices)
    for r in await conn.fetch(
        "SELECT choice, count(*) AS n FROM answer WHERE session_id = $1 AND question_id = $2"
        " GROUP BY choice",
        session_id,
        q.id,
    ):
        if 0 <= r["choice"] < len(counts):
            counts[r["choice"]] = r["n"]
    return QuestionClosed(
        session_id=str(session_id),
        question_id=q.id,
        answer=q.answer,
        distribution=counts,
        index=index,
    )


async def final_top(conn: Any, redis: Redis, session_id: uuid.UUID) -> tuple[int, list]:
    """(players, top 10) of a session: from the Redis board, or PostgreSQL without it."""
    try:
        snap = await ranking.read_snapshot(redis, str(session_id), 10)
        if snap is not None:
            return snap.players, snap.entries
    except Exception as e:
        log.warning("board read failed for session %s: %s", session_id, e)
    rows = await conn.fetch(
        "SELECT user_id, nickname, score, count(*) OVER () AS players FROM session_player"
        " WHERE session_id = $1 ORDER BY score DESC, reached_ms, joined_ms LIMIT 10",
        session_id,
    )
    entries = [
        LeaderboardEntry(
            rank=i + 1, user_id=str(r["user_id"]), nickname=r["nickname"], score=r["score"]
        )
        for i, r in enumerate(rows)
    ]
    return (rows[0]["players"] if rows else 0), entries


async def advance(conn: Any, redis: Redis, caller: Caller, session_id: str) -> AdvanceResult:
    """Live, the host: lobby -> question 0; otherwise close the open question and open
    the next, or end the session after the last one."""
    sid = parse_id(session_id, "session")
    session_id = str(sid)
    closed: QuestionClosed | None = None
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {SESSION_COLUMNS} FROM quiz_session WHERE id = $1 FOR UPDATE", sid
        )
        if row is None:
            raise NotFound("No such session")
        if str(row["host_id"]) != caller.user_id:
            raise Forbidden("Only the session's host may advance it")
        if row["mode"] != "live":
            raise Conflict("Only live sessions are advanced by the host")
        if row["state"] == "ended":
            raise Conflict("The session has ended")
        quiz = await load_quiz(conn, row["quiz_id"])
        assert quiz is not None
        now = now_ms()
        current = row["current_index"]
        if row["state"] == "running" and row["closed_index"] < current:
            closed = await _distribution(conn, sid, quiz, current)
        nxt = current + 1
        if nxt < quiz.count:
            deadline = now + quiz.questions[nxt].time_limit_s * 1000
            row = await conn.fetchrow(
                "UPDATE quiz_session SET state = 'running', current_index = $2,"
                " question_opened_ms = $3, deadline_ms = $4, closed_index = current_index"
                f" WHERE id = $1 RETURNING {SESSION_COLUMNS}",
                sid,
                nxt,
                now,
                deadline,
            )
        else:
            row = await conn.fetchrow(
                "UPDATE quiz_session SET state = 'ended', ended_ms = $2,"
                f" closed_index = current_index WHERE id = $1 RETURNING {SESSION_COLUMNS}",
                sid,
                now,
            )
    answer_cache.forget_session(sid)  # its answers are read again (the other process's
    # memory of it is caught by the answers' guarded write)
    await cache_session(redis, row, quiz)
    if closed is not None:
        await emit("question_closed", closed, session_id)
        await held.release(conn, redis, sid, emit)
    if row["state"] == "running":
        await emit(
            "question", question_event(session_id, quiz, nxt, row["deadline_ms"], now), session_id
        )
        players, version = await _player_count(conn, redis, sid)
        await emit(
            "session_state",
            SessionStateChanged(
                session_id=session_id,
                state="running",
                players=players,
                question_index=nxt,
                version=version,
            ),
            session_id,
        )
        return AdvanceResult(state="running", question_index=nxt)
    players, entries = await final_top(conn, redis, sid)
    await emit(
        "session_state",
        SessionStateChanged(
            session_id=session_id, state="ended", players=players, question_index=current
        ),
        session_id,
    )
    await emit(
        "session_ended",
        SessionEnded(session_id=session_id, players=players, entries=entries),
        session_id,
    )
    return AdvanceResult(state="ended", question_index=current)


async def close_due_questions(conn: Any, redis: Redis) -> int:
    """Send `question_closed` for live questions whose deadline (plus grace) passed.

    Any number of processes may run this: the UPDATE claims each close once.
    Returns how many questions were closed.
    """
    rows = await conn.fetch(
        "UPDATE quiz_session SET closed_index = current_index"
        " WHERE mode = 'live' AND state = 'running' AND closed_index < current_index"
        f" AND deadline_ms < $1 RETURNING {SESSION_COLUMNS}",
        now_ms() - CLOSE_AFTER_MS,
    )
    for row in rows:
        quiz = await load_quiz(conn, row["quiz_id"])
        if quiz is None:
            continue
        closed = await _distribution(conn, row["id"], quiz, row["current_index"])
        await emit("question_closed", closed, str(row["id"]))
        await held.release(conn, redis, row["id"], emit)
        await cache_session(redis, row, quiz)
    return len(rows)
