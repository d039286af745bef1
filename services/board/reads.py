"""Reads of a session's board for the HTTP API and the socket.io tier.

Served from Redis; a board missing in Redis is rebuilt from PostgreSQL first, so a
socket's ``join`` after Redis lost its data heals the board through this module.
"""

from __future__ import annotations

from redis.asyncio import Redis

from contracts import LeaderboardSnapshot, PlayerRank
from services.board.access import UnknownSession
from services.board.ranking import read_rank, read_snapshots
from services.board.rebuild import rebuild_board
from services.common.errors import ServiceError
from services.common.redis import board_version_key


class NotOnBoard(ServiceError):
    """The user is not a player of the session (404)."""

    status_code = 404
    detail = "Not a player of this session"


async def top(redis: Redis, session_id: str, limit: int = 10) -> LeaderboardSnapshot:
    """The session's top ``limit``; raises UnknownSession when PostgreSQL has no such session."""
    snap = (await read_snapshots(redis, [session_id], limit))[session_id]
    if snap is None:
        if not await rebuild_board(redis, session_id):
            raise UnknownSession()
        snap = (await read_snapshots(redis, [session_id], limit))[session_id]
        if snap is None:  # Redis lost it again at once: nothing sensible to serve
            raise RuntimeError("board vanished right after its rebuild")
    return snap


async def player_rank(redis: Redis, session_id: str, user_id: str) -> PlayerRank:
    """One player's rank, score and the player count; raises NotOnBoard or UnknownSession."""
    found = await read_rank(redis, session_id, user_id)
    if found is None:
        board_lost = not await redis.exists(board_version_key(session_id))
        if board_lost and not await rebuild_board(redis, session_id):
            raise UnknownSession()
        found = await read_rank(redis, session_id, user_id)
        if found is None:
            raise NotOnBoard()
    rank, score, players = found
    return PlayerRank(
        session_id=session_id, user_id=user_id, rank=rank, score=score, players=players
    )
