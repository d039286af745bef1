"""HTTP routes of the leaderboard service (thin: parse, check access, call board)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import Parameter

from contracts import LeaderboardSnapshot, PlayerRank
from services.board import reads as board
from services.board.access import NotAParticipant, UnknownSession, session_role
from services.common.auth import Caller, provide_caller
from services.common.redis import get_redis


async def _check_access(session_id: str, caller: Caller) -> None:
    try:
        await session_role(get_redis(), session_id, caller.user_id)
    except UnknownSession as e:
        raise NotFoundException("Unknown session") from e
    except NotAParticipant as e:
        raise PermissionDeniedException("Only the session's players and host may read it") from e


class LeaderboardController(Controller):
    path = "/sessions/{session_id:str}"
    dependencies = {"caller": provide_caller}
    tags = ["leaderboard"]

    @get("/top")
    async def top(
        self, session_id: str, caller: Caller, limit: Annotated[int, Parameter(ge=1, le=100)] = 10
    ) -> LeaderboardSnapshot:
        """The session's top ``limit`` players (rank 1 is the best) with the board's version."""
        await _check_access(session_id, caller)
        try:
            return await board.top(get_redis(), session_id, limit)
        except UnknownSession as e:
            raise NotFoundException("Unknown session") from e

    @get("/players/{user_id:str}")
    async def player(self, session_id: str, user_id: str, caller: Caller) -> PlayerRank:
        """One player's rank and score in the session, and the number of players."""
        await _check_access(session_id, caller)
        try:
            return await board.player_rank(get_redis(), session_id, user_id)
        except UnknownSession as e:
            raise NotFoundException("Unknown session") from e
        except board.NotOnBoard as e:
            raise NotFoundException("Not a player of this session") from e
