"""The question a player may answer now: the open one (live), or the player's next
one, handed out in order with its own clock (self-paced)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from contracts import QuestionOut
from services.board.question import question_event
from services.common.auth import Caller
from services.common.clock import now_ms
from services.quiz.answer_cache import answer_cache
from services.quiz.content import QuizContent, load_quiz, parse_id
from services.quiz.errors import Conflict, Forbidden, NotFound


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
            answer_cache.handed(sid, caller.user_id, row["last_question_id"], row["last_handed_ms"])
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
    answer_cache.handed(sid, caller.user_id, q.id, handed)  # its answer may skip a read
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
