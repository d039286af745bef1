"""services/board: one public form of a question, and a join that heals what Redis lost
(the role, the session view and the board come from PostgreSQL, the board rebuilt)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.board.question import StoredQuestion, question_event, question_opened
from services.board.view import JoinReads
from services.common.redis import board_key, board_names_key, board_version_key, session_key
from services.common.settings import get_settings
from services.quiz.content import Question, QuizContent
from tests.support.api import Api, question
from tests.support.game import LiveGame
from tests.support.player import Player


def _quiz() -> QuizContent:
    questions = [
        Question(
            id=f"q{i}", text=f"text {i}", choices=["a", "b"], answer=1, time_limit_s=15, points=9
        )
        for i in range(2)
    ]
    return QuizContent(
        id="quiz", owner_id="host", title="t", public=False, questions=questions, index_of={}
    )


def test_the_quiz_and_the_stored_json_give_one_public_form_without_the_answer() -> None:
    quiz = _quiz()
    stored = msgspec.json.decode(msgspec.json.encode(quiz.questions), type=list[StoredQuestion])
    event = question_event("s", quiz, 1, 5_000, 1_000)
    assert event == question_opened("s", stored[1], 1, quiz.count, 5_000, 1_000)
    assert (event.question_id, event.index, event.count, event.text) == ("q1", 1, 2, "text 1")
    assert (event.choices, event.time_limit_s, event.deadline_ms) == (["a", "b"], 15, 5_000)
    assert "answer" not in msgspec.json.decode(msgspec.json.encode(event))


@pytest.fixture
async def players() -> AsyncIterator[list[Player]]:
    made: list[Player] = []
    yield made
    await asyncio.gather(*(p.close() for p in made), return_exceptions=True)


@pytest.mark.stack
async def test_a_join_after_redis_lost_the_session_sees_the_same_session(
    api: Api, http: httpx.Client, base_url: str, players: list[Player]
) -> None:
    game = await asyncio.to_thread(LiveGame, api, 2)
    await asyncio.to_thread(game.advance)
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as client:
        await game.answer(client, 1)
    p = Player(game.players[0]["access_token"])
    players.append(p)
    await p.connect(base_url)
    cached = await p.join(game.id)  # the session hash and the board, from Redis
    assert cached["ok"] is True, cached

    redis = Redis.from_url(get_settings().redis_url)
    try:
        keys = [board_key(game.id), board_version_key(game.id), board_names_key(game.id)]
        assert await redis.delete(session_key(game.id), *keys) == 4
        healed = await p.join(game.id)  # role, view and board: PostgreSQL
        assert healed["ok"] is True, healed
        # The view was read from PostgreSQL (nothing wrote the hash back); the board was
        # rebuilt for the join, above every version handed out before.
        assert not await redis.exists(session_key(game.id))
        assert await redis.exists(*keys) == 3
    finally:
        await redis.aclose()

    assert (healed["state"], healed["mode"], healed["role"]) == ("running", "live", "player")
    assert healed["leaderboard"]["entries"] == cached["leaderboard"]["entries"]
    assert healed["leaderboard"]["players"] == 2
    assert healed["leaderboard"]["version"] > cached["leaderboard"]["version"]
    for ack in (cached, healed):
        assert ack["question"].pop("server_time_ms") > 0
        assert "answer" not in ack["question"]
    assert healed["question"] == cached["question"]
    # GET .../question answers with the same public form.
    got = question(http, game.players[0], game.id).json()
    assert {k: got[k] for k in cached["question"]} == cached["question"]


@pytest.mark.stack
async def test_a_join_read_survives_a_dropped_connection() -> None:
    """A pooled connection the server closed (a Redis restart, a cluster failover)
    fails the first pipeline on it; the join's read is tried again, not refused
    ("temporarily unavailable" in the cluster run before this)."""
    url = get_settings().redis_url
    # No retries of the client's own: what is tested is JoinReads' retry.
    redis = Redis.from_url(url, retry=Retry(NoBackoff(), 0))
    admin = Redis.from_url(url)
    reads = JoinReads()
    try:
        first = await reads.read(redis, "00000000-0000-0000-0000-000000000001", "u-1")
        assert first.role is None  # an unknown session: nothing in Redis
        name = f"join-read-{id(reads)}"
        await redis.client_setname(name)
        killed = 0
        for c in await admin.client_list():
            if c.get("name") == name:
                killed += int(await admin.client_kill_filter(_id=c["id"]))
        assert killed == 1
        again = await reads.read(redis, "00000000-0000-0000-0000-000000000001", "u-1")
        assert again == first
    finally:
        await redis.aclose()
        await admin.aclose()
