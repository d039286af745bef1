"""Sessions: opening, joining, advancing live questions, handing out questions, and
closing live questions whose deadline passed.

PostgreSQL holds every session's state; Redis holds a copy for the socket.io tier
(``session_key`` hash) and the board. Room events go out through the write-only
socket.io Redis manager from whichever process caused them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import msgspec
from msgspec import Struct
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from contracts import (
    AdvanceResult,
    JoinIn,
    JoinResult,
    LeaderboardEntry,
    QuestionClosed,
    QuestionOut,
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
from services.common.redis import board_key, board_version_key, get_redis, session_key
from services.common.rooms import get_emitter
from services.quiz import held
from services.quiz.content import QuizContent, load_quiz, parse_id
from services.quiz.errors import Conflict, Forbidden, Invalid, NotFound
from services.quiz.join_codes import insert_session

log = logging.getLogger("quizrt.quiz.sessions")

# Answers arriving this long after a live deadline still count (network delay); the
# deadline closer waits a little longer still, so an answer being accepted at the edge
# of the grace is committed before the distribution is counted.
GRACE_MS = 250
CLOSE_AFTER_MS = GRACE_MS + 250

SESSION_COLUMNS = (
    "id, quiz_id, host_id, mode, state, code, current_index, question_opened_ms, deadline_ms,"
    " created_ms, ended_ms, standing, closed_index"
)


# --------------------------------------------------------------------------- room events


async def emit(event: str, payload: Struct, session_id: str) -> None:
    """Send a room event; a Redis outage loses the event but never fails the request."""
    try:
        await get_emitter().emit(event, payload, session_id)
    except Exception as e:
        log.warning("could not emit %s to session %s: %s", event, session_id, e)


class JoinAnnouncer:
    """Coalesces the `session_state` events of players joining, per session.

    Each join used to broadcast to the whole room, so N players joining cost N^2
    deliveries (a stadium of 1,000: a million) and delayed the `question` events
    behind them. The first join of a quiet session is announced at once; later ones
    within the interval become one trailing event with the player count read
    fresh from the board when it is sent. The interval grows with the room: at
    least ``interval_s``, and long enough that one process's announcements to a
    room of N cost at most ``deliveries_per_s`` (a stadium of 5,000 joining: one
    announcement per 2.5 s instead of two a second, which were 2.4 million
    deliveries in the bench's stadium-5000).
    """

    def __init__(self, interval_s: float = 0.5, deliveries_per_s: float = 2000.0):
        self.interval_s = interval_s
        self.deliveries_per_s = deliveries_per_s
        self._last: dict[str, float] = {}
        self._pending: dict[str, SessionStateChanged] = {}
        self._tasks: set[asyncio.Task] = set()

    async def announce(self, event: SessionStateChanged) -> None:
        sid = event.session_id
        if sid in self._pending:  # a trailing event is already scheduled
            self._pending[sid] = event
            return
        interval = max(self.interval_s, event.players / self.deliveries_per_s)
        wait = self._last.get(sid, 0.0) + interval - time.monotonic()
        if wait <= 0:
            self._last[sid] = time.monotonic()
            await emit("session_state", event, sid)
            return
        self._pending[sid] = event
        asyncio.get_running_loop().call_later(wait, self._start_flush, sid)

    def _start_flush(self, sid: str) -> None:
        task = asyncio.ensure_future(self._flush(sid))
        self._tasks.add(task)  # held until done, so it is not collected mid-flight
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, sid: str) -> None:
        event = self._pending.pop(sid)
        self._last[sid] = time.monotonic()
        if len(self._last) > 10_000:  # forget quiet sessions
            cutoff = time.monotonic() - 60
            self._last = {k: v for k, v in self._last.items() if v > cutoff}
        try:
            players = int(await get_redis().zcard(board_key(sid)))
            if players:
                event = msgspec.structs.replace(event, players=players)
        except Exception:  # keep the count the last join saw
            pass
        await emit("session_state", event, sid)


join_announcer = JoinAnnouncer()


async def cache_session(redis: Redis, row: Any, quiz: QuizContent) -> None:
    """Write the session's shared state to its Redis hash (best effort).

    Fields: mode, state, host_id, quiz_id, code, current_index, closed_index,
    question_opened_ms, deadline_ms, created_ms, question_count, and ``question``:
    the open live question as the `question` event's JSON (empty when none).
    Also makes sure the board's version key exists, so an empty board has a snapshot.
    """
    sid = str(row["id"])
    question = b""
    if row["mode"] == "live" and row["state"] == "running" and row["current_index"] >= 0:
        question = msgspec.json.encode(
            question_event(
                sid, quiz, row["current_index"], row["deadline_ms"], row["question_opened_ms"]
            )
        )
    fields: dict[FieldT, EncodableT] = {
        "mode": row["mode"],
        "state": row["state"],
        "host_id": str(row["host_id"]),
        "quiz_id": str(row["quiz_id"]),
        "code": row["code"],
        "current_index": row["current_index"],
        "closed_index": row["closed_index"],
        "question_opened_ms": row["question_opened_ms"] or 0,
        "deadline_ms": row["deadline_ms"] or 0,
        "created_ms": row["created_ms"],
        "question_count": quiz.count,
        "question": question,
    }
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.hset(session_key(sid), mapping=fields)
        pipe.set(board_version_key(sid), ranking.initial_version(), nx=True)
        await pipe.execute()
    except Exception as e:
        log.warning("could not cache session %s in Redis: %s", sid, e)


async def _player_count(conn: Any, redis: Redis, session_id: uuid.UUID) -> int:
    try:
        return int(await redis.zcard(board_key(str(session_id))))
    except Exception:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM session_player WHERE session_id = $1", session_id
            )
        )


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
            _, players, _ = await ranking.write_score(
                redis, str(sid), caller.user_id, 0, reached, nickname=nickname
            )
        except Exception as e:
            log.warning("board write failed for session %s (will rebuild): %s", sid, e)
            await _mark_dirty(conn, sid)
            players = await _player_count(conn, redis, sid)
        await cache_session(redis, row, quiz)
        await join_announcer.announce(
            SessionStateChanged(
                session_id=str(sid),
                state=row["state"],
                players=players,
                question_index=row["current_index"],
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
    await cache_session(redis, row, quiz)
    if closed is not None:
        await emit("question_closed", closed, session_id)
        await held.release(conn, redis, sid, emit)
    if row["state"] == "running":
        await emit(
            "question", question_event(session_id, quiz, nxt, row["deadline_ms"], now), session_id
        )
        players = await _player_count(conn, redis, sid)
        await emit(
            "session_state",
            SessionStateChanged(
                session_id=session_id, state="running", players=players, question_index=nxt
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


# --------------------------------------------------------------------------- questions


async def current_question(conn: Any, caller: Caller, session_id: str) -> QuestionOut:
    """The question the caller may answer now.

    Live: the open question (``answered`` says whether the caller answered it), until
    its deadline. Self-paced: the caller's question in progress (same deadline when
    asked again), or the next one, whose clock starts now. Conflict when none.
    """
    sid = parse_id(session_id, "session")
    session_id = str(sid)
    uid = uuid.UUID(caller.user_id)
    row = await conn.fetchrow(
        "SELECT s.mode, s.state, s.host_id, s.quiz_id, s.current_index, s.question_opened_ms,"
        " s.deadline_ms, sp.id IS NOT NULL AS joined, h.question_index AS last_index,"
        " h.question_id AS last_question_id, h.handed_ms AS last_handed_ms,"
        " (a.id IS NOT NULL) AS last_answered,"
        " EXISTS (SELECT 1 FROM answer la WHERE la.session_id = s.id AND la.user_id = $2"
        "         AND la.question_index = s.current_index) AS live_answered"
        " FROM quiz_session s"
        " LEFT JOIN session_player sp ON sp.session_id = s.id AND sp.user_id = $2"
        " LEFT JOIN LATERAL (SELECT question_index, question_id, handed_ms FROM handout"
        "   WHERE session_id = s.id AND user_id = $2 ORDER BY question_index DESC LIMIT 1) h"
        "   ON s.mode = 'self_paced'"
        " LEFT JOIN answer a ON a.session_id = s.id AND a.user_id = $2"
        "   AND a.question_id = h.question_id"
        " WHERE s.id = $1",
        sid,
        uid,
    )
    if row is None:
        raise NotFound("No such session")
    is_host = str(row["host_id"]) == caller.user_id
    if not row["joined"] and not (is_host and row["mode"] == "live"):
        raise Forbidden("Join the session first")
    quiz = await load_quiz(conn, row["quiz_id"])
    assert quiz is not None
    now = now_ms()
    if row["state"] != "running":
        raise Conflict("No question is open" if row["state"] == "lobby" else "The session ended")
    if row["mode"] == "live":
        index = row["current_index"]
        if index < 0 or now > row["deadline_ms"]:
            raise Conflict("No question is open")
        return _question_out(
            session_id, quiz, index, row["deadline_ms"], now, answered=row["live_answered"]
        )
    # Self-paced: questions are handed out in order; the last one handed out is still
    # in progress until it is answered or its time is up, then the next one is due.
    last = row["last_index"]
    if last is not None and not row["last_answered"]:
        deadline = row["last_handed_ms"] + quiz.questions[last].time_limit_s * 1000
        if now <= deadline:
            return _question_out(session_id, quiz, last, deadline, now)
    index = 0 if last is None else last + 1
    if index >= quiz.count:
        raise Conflict("You have answered every question")
    q = quiz.questions[index]
    handed = await conn.fetchval(
        "INSERT INTO handout (session_id, user_id, question_id, question_index, handed_ms)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, user_id, question_id)"
        " DO UPDATE SET handed_ms = handout.handed_ms RETURNING handed_ms",
        sid,
        uid,
        q.id,
        index,
        now,
    )
    return _question_out(session_id, quiz, index, handed + q.time_limit_s * 1000, now)


def _question_out(
    session_id: str,
    quiz: QuizContent,
    index: int,
    deadline_ms: int,
    now: int,
    answered: bool = False,
) -> QuestionOut:
    # The HTTP view of the same question the `question` event carries (never the answer).
    event = question_event(session_id, quiz, index, deadline_ms, now)
    return QuestionOut(**msgspec.structs.asdict(event), answered=answered)


# --------------------------------------------------------------------------- Redis restore

# Set after every open session's hash was written; missing means Redis lost its data.
# (The leaderboard consumer restores the boards and owns ``ALIVE_KEY``; this marker is
# the quiz service's own, so neither restore can hide the other.)
SESSIONS_CACHED_KEY = "quizrt:alive:sessions"
_RESTORE_LOCK_KEY = "quizrt:sessions-restore-lock"


async def restore_session_hashes(conn: Any, redis: Redis) -> int:
    """Rewrite the Redis hash of every session not ended, once after Redis lost its data.

    Returns how many were written (0 when nothing was to do or another process does it).
    """
    if await redis.exists(SESSIONS_CACHED_KEY):
        return 0
    if not await redis.set(_RESTORE_LOCK_KEY, "1", nx=True, px=60_000):
        return 0
    try:
        rows = await conn.fetch(
            f"SELECT {SESSION_COLUMNS} FROM quiz_session WHERE state <> 'ended'"
        )
        for row in rows:
            quiz = await load_quiz(conn, row["quiz_id"])
            if quiz is not None:
                await cache_session(redis, row, quiz)
        await redis.set(SESSIONS_CACHED_KEY, now_ms())
        if rows:
            log.warning("Redis had lost the session hashes: rewrote %d", len(rows))
        return len(rows)
    finally:
        await redis.delete(_RESTORE_LOCK_KEY)
