"""HTTP routes of the leaderboard service (thin: parse, check access, call board).

The Redis client comes per request (``redis``: see ``services.common.web``); access
and board reads raise ``UnknownSession`` (404), ``NotAParticipant`` (403) and
``NotOnBoard`` (404), which the app factory's one handler answers.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from contracts import LeaderboardSnapshot, PlayerRank
from services.board import reads as board
from services.board.access import session_role
from services.common.auth import Caller, provide_caller, signed_in
from services.common.web import RedisClient


class LeaderboardController(Controller):
    path = "/sessions/{session_id:str}"
    guards = [signed_in]  # before any dependency: a refused call takes no connection
    dependencies = {"caller": provide_caller}
    tags = ["leaderboard"]

    @get("/top")
    async def top(
        self,
        session_id: str,
        caller: Caller,
        redis: RedisClient,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 10,
    ) -> LeaderboardSnapshot:
        """The session's top ``limit`` players (rank 1 is the best) with the board's version."""
        await session_role(redis, session_id, caller.user_id)
        return await board.top(redis, session_id, limit)

    @get("/players/{user_id:str}")
    async def player(
        self, session_id: str, user_id: str, caller: Caller, redis: RedisClient
    ) -> PlayerRank:
        """One player's rank and score in the session, and the number of players."""
        await session_role(redis, session_id, caller.user_id)
        return await board.player_rank(redis, session_id, user_id)
