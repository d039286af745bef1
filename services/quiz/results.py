"""Final standings of a session for its host, as JSON and as CSV."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from contracts import AnswerRecord, PlayerResult, SessionResults
from services.common.auth import Caller
from services.quiz.content import QuizContent, load_quiz, parse_id
from services.quiz.errors import Forbidden, NotFound


async def session_results(
    conn: Any, caller: Caller, session_id: str
) -> tuple[SessionResults, QuizContent]:
    """Every player ranked by score, then by who reached it first, with their answers."""
    sid = parse_id(session_id, "session")
    session = await conn.fetchrow(
        "SELECT quiz_id, host_id, state FROM quiz_session WHERE id = $1", sid
    )
    if session is None:
        raise NotFound("No such session")
    if str(session["host_id"]) != caller.user_id:
        raise Forbidden("Only the session's host may read its results")
    quiz = await load_quiz(conn, session["quiz_id"])
    assert quiz is not None
    players = await conn.fetch(
        "SELECT user_id, nickname, score FROM session_player WHERE session_id = $1"
        " ORDER BY score DESC, reached_ms, joined_ms, user_id",
        sid,
    )
    answers: dict[uuid.UUID, list[AnswerRecord]] = {}
    for a in await conn.fetch(
        "SELECT user_id, question_id, choice, correct, points, elapsed_ms FROM answer"
        " WHERE session_id = $1 ORDER BY question_index",
        sid,
    ):
        answers.setdefault(a["user_id"], []).append(
            AnswerRecord(
                question_id=a["question_id"],
                choice=a["choice"],
                correct=a["correct"],
                points=a["points"],
                elapsed_ms=a["elapsed_ms"],
            )
        )
    return SessionResults(
        session_id=str(sid),
        quiz_id=quiz.id,
        state=session["state"],
        players=[
            PlayerResult(
                rank=i + 1,
                user_id=str(p["user_id"]),
                nickname=p["nickname"],
                score=p["score"],
                answers=answers.get(p["user_id"], []),
            )
            for i, p in enumerate(players)
        ],
    ), quiz


def results_csv(results: SessionResults, quiz: QuizContent) -> str:
    """One row per player: rank, nickname, score, correct, then q1..qN points
    (empty where the player gave no answer)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["rank", "nickname", "score", "correct", *[f"q{i + 1}" for i in range(quiz.count)]]
    )
    for p in results.players:
        by_question = {a.question_id: a for a in p.answers}
        cells = [by_question[q.id].points if q.id in by_question else "" for q in quiz.questions]
        writer.writerow(
            [p.rank, _cell(p.nickname), p.score, sum(a.correct for a in p.answers), *cells]
        )
    return out.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """Keep spreadsheets from running a nickname as a formula (CSV injection).

    Spreadsheets skip invisible characters (zero-width space, BOM, bidi marks) and
    spaces before a formula, so the first visible character is the one that counts.
    """
    visible = text.lstrip("".join(_INVISIBLE) + " \u00a0")
    risky = text[:1] in _FORMULA_START or visible[:1] in _FORMULA_START
    return f"'{text}" if risky else text


_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u200e\u200f\u061c\ufeff\u2060\u00ad\u180e"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
