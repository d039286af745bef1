"""The leaderboard's HTTP app in the test process (AsyncTestClient), beside
tests/test_leaderboard.py through nginx: refusals with a Redis the request must not
use, and the board of a session the in-process quiz app opened, on the stack's
real PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.iam.keys import KeyRing
from services.leaderboard.controllers import LeaderboardController
from services.quiz.controllers import QuizController
from tests.support.inprocess import bearer, serve, trusted_ring, user_of, value


class Untouched:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the route used Redis ({name}) where it must not")


@pytest.fixture
def ring() -> Iterator[KeyRing]:
    with trusted_ring() as r:
        yield r


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


async def test_refusals_need_no_redis(ring: KeyRing) -> None:
    async with serve("leaderboard", [LeaderboardController], {"redis": value(Untouched())}) as c:
        r = await c.get("/api/leaderboard/sessions/not-a-session/top", headers=bearer(ring))
        assert error(r, 404) == {"status_code": 404, "detail": "Unknown session"}
        r = await c.get("/api/leaderboard/sessions/x/players/y", headers=bearer(ring))
        assert error(r, 404) == {"status_code": 404, "detail": "Unknown session"}
        r = await c.get(f"/api/leaderboard/sessions/{uuid.uuid4()}/top")
        assert error(r, 401)["detail"] == "Missing bearer token"
        r = await c.get(
            f"/api/leaderboard/sessions/{uuid.uuid4()}/top?limit=0", headers=bearer(ring)
        )
        assert "(field `limit`)" in error(r, 422)["detail"]


@pytest.mark.stack
async def test_a_sessions_board_in_process(ring: KeyRing) -> None:
    host, player, outsider = bearer(ring, "host"), bearer(ring), bearer(ring)
    quiz = {"title": "board", "questions": [{"text": "?", "choices": ["a", "b"], "answer": 0}]}
    async with serve("quiz", [QuizController], real=True) as q:  # one real app at a time
        quiz_id = (await q.post("/api/quiz/quizzes", json=quiz, headers=host)).json()["id"]
        body = {"quiz_id": quiz_id, "mode": "live"}
        sid = (await q.post("/api/quiz/sessions", json=body, headers=host)).json()["id"]
        r = await q.post("/api/quiz/sessions/join", json={"session_id": sid}, headers=player)
        assert r.status_code == 200, r.text
    async with serve("leaderboard", [LeaderboardController], real=True) as lb:
        base = f"/api/leaderboard/sessions/{sid}"
        for who in (player, host):
            top = await lb.get(f"{base}/top", headers=who)
            assert top.status_code == 200, top.text
            assert [e["user_id"] for e in top.json()["entries"]] == [user_of(player)]
        r = await lb.get(f"{base}/players/{user_of(player)}", headers=player)
        assert r.json()["rank"] == 1 and r.json()["players"] == 1, r.text
        r = await lb.get(f"{base}/top", headers=outsider)
        assert error(r, 403) == {
            "status_code": 403,
            "detail": "Only the session's players and host may read it",
        }
        r = await lb.get(f"{base}/players/{user_of(outsider)}", headers=host)
        assert error(r, 404) == {"status_code": 404, "detail": "Not a player of this session"}
        r = await lb.get(f"/api/leaderboard/sessions/{uuid.uuid4()}/top", headers=player)
        assert error(r, 404) == {"status_code": 404, "detail": "Unknown session"}
