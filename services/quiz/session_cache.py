"""The copy of a session's state in Redis (the ``session_key`` hash) that the
socket.io tier reads, and the session row it is written from.

PostgreSQL holds every session's state; this copy is best effort and rebuilt from
PostgreSQL when Redis loses it (``services.quiz.restore``).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from services.board import ranking
from services.board.question import question_event
from services.common.redis import board_version_key, session_key
from services.quiz.content import QuizContent

log = logging.getLogger("quizrt.quiz.session_cache")

SESSION_COLUMNS = (
    "id, quiz_id, host_id, mode, state, code, current_index, question_opened_ms, deadline_ms,"
    " created_ms, ended_ms, standing, closed_index"
)


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
