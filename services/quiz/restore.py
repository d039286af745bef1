"""Rewriting the sessions' Redis hashes after Redis lost its data (PostgreSQL has
every session; ``services.quiz.session_cache`` writes one)."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from services.common.clock import now_ms
from services.quiz.content import load_quiz
from services.quiz.session_cache import SESSION_COLUMNS, cache_session

log = logging.getLogger("quizrt.quiz.restore")

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
