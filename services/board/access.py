"""Who may read a session's board and join its room: its players and its host.

Redis answers the common case in one round trip (the board's nickname hash has
every joined player; the session hash names the host); PostgreSQL answers when
Redis does not know (not cached yet, or lost).
"""

from __future__ import annotations

from typing import Literal

from redis.asyncio import Redis

from services.board.rebuild import parse_session_id
from services.common import db
from services.common.errors import ServiceError
from services.common.redis import as_text, board_names_key, session_key

SessionRole = Literal["player", "host"]


class UnknownSession(ServiceError):
    """No session has this id (404)."""

    status_code = 404
    detail = "Unknown session"


class NotAParticipant(ServiceError):
    """The caller is neither a player nor the host of the session (403)."""

    status_code = 403
    detail = "Only the session's players and host may read it"


async def session_role(redis: Redis, session_id: str, user_id: str) -> SessionRole:
    """The caller's role in the session; raises UnknownSession or NotAParticipant."""
    sid = parse_session_id(session_id)
    if sid is None:
        raise UnknownSession()
    pipe = redis.pipeline(transaction=False)
    pipe.hget(session_key(session_id), "host_id")
    pipe.hexists(board_names_key(session_id), user_id)
    host_id, is_player = await pipe.execute()
    cached = role_from_redis(host_id, is_player, user_id)
    if cached is not None:
        return cached
    return await role_from_postgres(session_id, user_id)


def role_from_redis(
    host_id: bytes | str | None, is_player: object, user_id: str
) -> SessionRole | None:
    """The role Redis shows (the session hash's host, the board's names); None: ask PostgreSQL."""
    if host_id is not None and as_text(host_id) == user_id:
        return "host"
    if is_player:
        return "player"
    return None


async def role_from_postgres(session_id: str, user_id: str) -> SessionRole:
    """The caller's role from PostgreSQL; raises UnknownSession or NotAParticipant."""
    sid = parse_session_id(session_id)
    if sid is None:
        raise UnknownSession()
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "select s.host_id, exists(select 1 from session_player p"
            " where p.session_id = s.id and p.user_id::text = $2) as joined"
            " from quiz_session s where s.id = $1",
            sid,
            user_id,
        )
    if row is None:
        raise UnknownSession()
    if str(row["host_id"]) == user_id:
        return "host"
    if row["joined"]:
        return "player"
    raise NotAParticipant()
