"""Rebuild Redis boards from PostgreSQL (the source of truth).

A board is rebuilt when it is missing in Redis, when the quiz service marked it
dirty (``quiz_session.board_dirty``: a Redis write failed), or when Redis lost its
data (``ALIVE_KEY`` missing).

An answer's board write precedes its commit (services/quiz/answers.py), so a rebuild
can read PostgreSQL without an answer whose total the board already holds. Two
things keep such an answer from being lost:

- the rebuild WATCHes the version key: a board write between our PostgreSQL read and
  our MULTI drops the MULTI, and the rebuild reads PostgreSQL again;
- it holds the session row FOR UPDATE and, before its commit, records the version it
  wrote in ``quiz_session.board_rebuilt``; an answer commits only if its board write
  came after that version (it locks the row FOR KEY SHARE, so it waits for a rebuild
  in progress and sees what it recorded), else it is scored again on the new board.

The answer batch is the only writer of players' totals and locks the session row
before any player row, so the FOR UPDATE also waits for the answers committing
meanwhile: the players are read without row locks of their own.

Joins to the session (their foreign key locks the row FOR KEY SHARE) wait for the
rebuild's commit, a few milliseconds.
"""

from __future__ import annotations

import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import WatchError

from services.board.ranking import composite, initial_version
from services.common import db
from services.common.clock import now_ms
from services.common.ids import canonical_uuid
from services.common.redis import ALIVE_KEY, board_key, board_names_key, board_version_key

log = logging.getLogger("quizrt.board.rebuild")

# Held while one process rebuilds every open board, so several consumers don't all do it.
REBUILD_LOCK_KEY = "quizrt:rebuild-lock"


def parse_session_id(session_id: str) -> uuid.UUID | None:
    """The UUID of a session id, or None when it cannot name a session (or is not canonical)."""
    return canonical_uuid(session_id)


async def rebuild_board(redis: Redis, session_id: str, attempts: int = 10) -> bool:
    """Write the session's board (scores, nicknames, a new higher version) from PostgreSQL.

    Returns False when PostgreSQL knows no such session. Raises when the board kept
    changing during ``attempts`` tries (the caller retries later).
    """
    sid = parse_session_id(session_id)
    if sid is None:
        return False
    key, names_key, vkey = (
        board_key(session_id),
        board_names_key(session_id),
        board_version_key(session_id),
    )
    for _ in range(attempts):
        # See the module's docstring: the session row's lock and ``board_rebuilt``
        # turn back answers whose board write this rebuild replaces.
        async with (
            redis.pipeline(transaction=True) as pipe,
            db.connection() as conn,
            conn.transaction(),
        ):
            await pipe.watch(vkey)
            known = await conn.fetchval("select 1 from quiz_session where id = $1 for update", sid)
            if not known:
                await pipe.unwatch()
                return False
            rows = await conn.fetch(
                "select user_id, nickname, score, reached_ms from session_player"
                " where session_id = $1",
                sid,
            )
            current = await pipe.get(vkey)
            # Above every version handed out before, even if the clock went back.
            version = max(initial_version(), int(current or 0) + 1)
            pipe.multi()
            pipe.delete(key, names_key)
            if rows:
                pipe.zadd(
                    key, {str(r["user_id"]): composite(r["score"], r["reached_ms"]) for r in rows}
                )
                pipe.hset(names_key, mapping={str(r["user_id"]): r["nickname"] for r in rows})
            pipe.set(vkey, version)
            try:
                await pipe.execute()
            except WatchError:
                continue
            await conn.execute(
                "update quiz_session set board_rebuilt = $2 where id = $1", sid, version
            )
        log.info(
            "rebuilt board of session %s (%d players, version %d)",
            session_id,
            len(rows),
            version,
        )
        return True
    raise RuntimeError(f"board of session {session_id} kept changing during rebuild")


async def rebuild_dirty_boards(redis: Redis) -> list[str]:
    """Rebuild the boards the quiz service marked dirty; returns their session ids.

    The flag is cleared before the rebuild (a write that fails after that marks it
    again), and set back if the rebuild fails.
    """
    async with db.connection() as conn:
        rows = await conn.fetch(
            "update quiz_session set board_dirty = false where board_dirty returning id"
        )
    done = []
    for r in rows:
        session_id = str(r["id"])
        try:
            await rebuild_board(redis, session_id)
            done.append(session_id)
        except Exception:
            log.exception("rebuild of dirty board %s failed; will retry", session_id)
            async with db.connection() as conn:
                await conn.execute(
                    "update quiz_session set board_dirty = true where id = $1", r["id"]
                )
    return done


async def rebuild_if_redis_lost(redis: Redis) -> list[str]:
    """When ``ALIVE_KEY`` is missing (Redis lost its data, or a fresh Redis), rebuild
    every board of a session that is not ended, then set the key. Returns the
    rebuilt session ids (empty when nothing was to do or another process does it).
    Boards of ended sessions are rebuilt on their first read.
    """
    if await redis.exists(ALIVE_KEY):
        return []
    if not await redis.set(REBUILD_LOCK_KEY, "1", nx=True, px=60_000):
        return []
    try:
        async with db.connection() as conn:
            rows = await conn.fetch("select id from quiz_session where state <> 'ended'")
        done = []
        for r in rows:
            if await rebuild_board(redis, str(r["id"])):
                done.append(str(r["id"]))
        await redis.set(ALIVE_KEY, now_ms())
        if done:
            log.warning("Redis had lost its data: rebuilt %d boards", len(done))
        return done
    finally:
        await redis.delete(REBUILD_LOCK_KEY)
