"""Redis down: joins and answers are still accepted (the rank then comes from
PostgreSQL); when Redis is back (empty: the test stack keeps no Redis data), the
boards are rebuilt from PostgreSQL and the session hashes are written again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from services.common.redis import session_key
from services.common.settings import get_settings
from tests.support.api import Api, answer, join, question
from tests.support.game import Quiz
from tests.support.stack import stack_cmd, wait_until

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it kills and restarts Redis.
pytestmark = [pytest.mark.stack, pytest.mark.alone]


async def session_state_in_redis(session_id: str) -> bytes | str | None:
    # A client of its own: this runs in asyncio.run(), a loop other than the one the
    # process-wide client may have been created on by an async test.
    r = Redis.from_url(get_settings().redis_url)
    try:
        return await r.hget(session_key(session_id), "state")
    finally:
        await r.aclose()


def test_redis_outage_answers_accepted_and_board_rebuilt(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    quiz = Quiz(api, 2, limit_s=60)
    sid = quiz.open_session("self_paced")["id"]
    p1, p2, late = api.guest(), api.guest(), api.guest()
    for p in (p1, p2):
        assert join(http, p, session_id=sid).status_code == 200
    qids = quiz.question_ids

    question(http, p1, sid)
    first = answer(http, p1, sid, qids[0], quiz.answer_of(0)).json()
    stack_cmd(stack_dir, "kill", "redis")
    try:
        assert join(http, late, session_id=sid).status_code == 200
        question(http, p1, sid)
        a1 = answer(http, p1, sid, qids[1], quiz.answer_of(1))
        assert a1.status_code == 200, a1.text
        question(http, p2, sid)
        a2 = answer(http, p2, sid, qids[0], quiz.answer_of(0))
        assert a2.status_code == 200, a2.text
        # Ranks computed by PostgreSQL: p1 leads with two correct answers.
        assert a1.json()["rank"] == 1 and a2.json()["rank"] == 2
        assert a1.json()["version"] == 0  # the board did not take this write
    finally:
        stack_cmd(stack_dir, "restart", "redis")

    totals = {
        p1["user"]["id"]: a1.json()["score"],
        p2["user"]["id"]: a2.json()["score"],
        late["user"]["id"]: 0,
    }
    assert totals[p1["user"]["id"]] == first["points"] + a1.json()["points"]

    def rebuilt() -> dict | None:
        r = http.get(f"/api/leaderboard/sessions/{sid}/top", headers=Api.auth(p1))
        if r.status_code != 200:
            return None
        board = {e["user_id"]: e["score"] for e in r.json()["entries"]}
        return r.json() if board == totals else None

    top = wait_until(rebuilt, timeout_s=15, every_s=0.25)
    assert [e["user_id"] for e in top["entries"]][:2] == [p1["user"]["id"], p2["user"]["id"]]
    assert top["players"] == 3
    state = wait_until(lambda: asyncio.run(session_state_in_redis(sid)), timeout_s=10)
    assert state == b"running"
