"""Group commit of answers (services/quiz/answers.py): a batch answers each answer
exactly as one batch per answer would, concurrent repeats across both quiz processes
count once, and PostgreSQL failing in the middle of a batch writes none of it and
gives every client a 503 it can retry."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from contracts import AnswerIn
from infra.stack import read_layout
from services.board import ranking
from services.board.rebuild import rebuild_board
from services.common import db
from services.common.auth import Caller
from services.common.clock import now_ms
from services.common.redis import board_key, board_version_key
from services.common.settings import get_settings
from services.quiz import answers as quiz_answers
from services.quiz import outbox
from services.quiz.answers import Answer, Outcome, Retry, score_batch
from services.quiz.errors import QuizError
from services.quiz.sessions import GRACE_MS
from tests.conftest import Api
from tests.support.api import answer, join
from tests.support.game import Quiz
from tests.support.stack import wait_until

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it stalls and terminates the quiz services' PostgreSQL connections.
pytestmark = [pytest.mark.stack, pytest.mark.alone]

LIMIT_S = 30


def caller(player: dict) -> Caller:
    u = player["user"]
    return Caller(user_id=u["id"], role="player", nickname=u.get("nickname") or "player")


def comparable(outcome: Outcome) -> tuple[str, bytes | str]:
    """What the client gets from an outcome: the reply's bytes, or the error's status
    and detail (the JSON error body is made from these two alone)."""
    if isinstance(outcome, bytes):
        return "200", outcome
    assert isinstance(outcome, QuizError), outcome  # no Retry, no failure here
    return str(outcome.status_code), outcome.detail


async def _same_start(conn: asyncpg.Connection, redis: Redis, sids: list[uuid.UUID]) -> int:
    """Give the sessions the same clock (created, opened, deadline), every player the
    same reached time and the boards the same entries and version; returns opened."""
    opened = now_ms()
    await conn.execute(
        "UPDATE quiz_session SET created_ms = $2, question_opened_ms = $3, deadline_ms = $4"
        " WHERE id = ANY($1)",
        sids,
        opened - 60_000,
        opened,
        opened + LIMIT_S * 1000,
    )
    await conn.execute("UPDATE session_player SET reached_ms = 0 WHERE session_id = ANY($1)", sids)
    version = ranking.initial_version()
    for sid in sids:
        await redis.delete(board_key(str(sid)))
        for r in await conn.fetch(
            "SELECT user_id, nickname, score FROM session_player WHERE session_id = $1", sid
        ):
            await ranking.write_score(
                redis, str(sid), str(r["user_id"]), r["score"], 0, nickname=r["nickname"]
            )
        await redis.set(board_version_key(str(sid)), version)
    return opened


async def _batch_vs_one_by_one(quiz: Quiz, sids: list[str], players: dict[str, dict]) -> None:
    s = get_settings()
    conn = await asyncpg.connect(s.database_url)
    redis = Redis.from_url(s.redis_url)
    try:
        batched, single = (uuid.UUID(x) for x in sids)
        opened = await _same_start(conn, redis, [batched, single])
        q0, q1 = quiz.question_ids[:2]
        right, wrong = quiz.answer_of(0), quiz.answer_of(0) + 1

        def answers(sid: uuid.UUID) -> tuple[list[Answer], list[Answer]]:
            before = [Answer(caller(players["repeat"]), sid, AnswerIn(q0, wrong), opened + 300)]
            batch = [
                Answer(caller(players["fast"]), sid, AnswerIn(q0, right), opened + 1200),
                Answer(caller(players["wrong"]), sid, AnswerIn(q0, wrong), opened + 2000),
                Answer(caller(players["repeat"]), sid, AnswerIn(q0, right), opened + 2500),
                Answer(
                    caller(players["late"]),
                    sid,
                    AnswerIn(q0, right),
                    opened + LIMIT_S * 1000 + GRACE_MS + 1,
                ),
                Answer(caller(players["outsider"]), sid, AnswerIn(q0, right), opened + 2600),
                Answer(caller(players["ahead"]), sid, AnswerIn(q1, right), opened + 2700),
                Answer(caller(players["slow"]), sid, AnswerIn(q0, right), opened + 9000),
                Answer(caller(players["fast"]), uuid.uuid4(), AnswerIn(q0, right), opened + 3000),
            ]
            return before, batch

        before_b, batch_b = answers(batched)
        before_s, batch_s = answers(single)
        first_b = await score_batch(conn, redis, before_b)
        first_s = await score_batch(conn, redis, before_s)
        assert first_b == first_s and isinstance(first_b[0], bytes), (first_b, first_s)

        together = await score_batch(conn, redis, batch_b)
        one_by_one = [(await score_batch(conn, redis, [a]))[0] for a in batch_s]
        got = [comparable(o) for o in together]
        assert got == [comparable(o) for o in one_by_one]
        expected = ["200", "200", "200", "409", "403", "409", "200", "404"]
        assert [status for status, _ in got] == expected
        assert got[2][1] == first_b[0]  # the repeat: the first reply, byte for byte
        replies = [json.loads(body) for status, body in got if status == "200"]
        assert replies[0]["rank"] == 1 and replies[3]["rank"] == 2  # fast, then slow
        assert len({r["version"] for r in replies if r["points"]}) == 2  # one per write

        stored = (
            "SELECT u.user_id, u.score, u.last_index, u.streak, u.correct_count,"
            " (SELECT count(*) FROM answer a WHERE a.session_id = u.session_id"
            "  AND a.user_id = u.user_id) AS answers"
            " FROM session_player u WHERE u.session_id = $1 ORDER BY u.user_id"
        )
        in_b = [dict(r) for r in await conn.fetch(stored, batched)]
        assert in_b == [dict(r) for r in await conn.fetch(stored, single)]
        outbox = "SELECT count(*) FROM outbox WHERE key = $1"
        assert await conn.fetchval(outbox, str(batched)) == 4  # repeat, fast, wrong, slow
        assert await conn.fetchval(outbox, str(single)) == 4
        board_b = await redis.zrevrange(board_key(str(batched)), 0, -1, withscores=True)
        assert board_b == await redis.zrevrange(board_key(str(single)), 0, -1, withscores=True)
    finally:
        await redis.aclose()
        await conn.close()


def test_a_batch_answers_each_answer_as_one_by_one_would(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 2, limit_s=LIMIT_S)
    players = {
        name: api.guest(f"p-{name}")
        for name in ("fast", "wrong", "repeat", "late", "outsider", "ahead", "slow")
    }
    sids = []
    for _ in range(2):
        sid = quiz.open_session("live")["id"]
        for name, p in players.items():
            if name != "outsider":
                assert join(http, p, session_id=sid).status_code == 200
        quiz.advance(sid)
        sids.append(sid)
    asyncio.run(_batch_vs_one_by_one(quiz, sids, players))


# --------------------------------------------------------------------------- two processes


def quiz_ports(stack_dir: Path) -> list[int]:
    return read_layout(stack_dir).quiz_ports


def live_game(http: httpx.Client, api: Api, players: int) -> tuple[Quiz, str, list[dict]]:
    """A one-question live session with ``players`` joined guests, its question open."""
    quiz = Quiz(api, 1, limit_s=LIMIT_S)
    sid = quiz.open_session("live")["id"]
    joined = [api.guest() for _ in range(players)]
    for p in joined:
        assert join(http, p, session_id=sid).status_code == 200
    quiz.advance(sid)
    return quiz, sid, joined


def post_answer(
    client: httpx.AsyncClient, player: dict, sid: str, qid: str, choice: int
) -> Awaitable[httpx.Response]:
    return client.post(
        f"/api/quiz/sessions/{sid}/answers",
        headers=Api.auth(player),
        json={"question_id": qid, "choice": choice},
    )


async def _repeats_on_both(
    ports: list[int], player: dict, sid: str, qid: str, per_port: int
) -> list[httpx.Response]:
    """``per_port`` copies of one answer (choices vary) sent at once to each quiz process."""
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=20) for p in ports]
    try:
        return await asyncio.gather(
            *[post_answer(c, player, sid, qid, i % 3) for i in range(per_port) for c in clients]
        )
    finally:
        for c in clients:
            await c.aclose()


def test_concurrent_repeats_across_two_quiz_processes_count_once(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    ports = quiz_ports(stack_dir)
    assert len(ports) >= 2
    quiz, sid, players = live_game(http, api, 6)
    qid = quiz.question_ids[0]

    async def all_players() -> list[list[httpx.Response]]:
        return await asyncio.gather(*[_repeats_on_both(ports, p, sid, qid, 5) for p in players])

    for replies in asyncio.run(all_players()):
        assert {r.status_code for r in replies} == {200}, [r.text for r in replies]
        assert len({r.content for r in replies}) == 1  # every copy gets the first reply
    res = http.get(f"/api/quiz/sessions/{sid}/results", headers=quiz.auth).json()
    assert sorted(len(p["answers"]) for p in res["players"]) == [1] * len(players)
    totals = {p["user_id"]: p["score"] for p in res["players"]}
    assert all(p["score"] == p["answers"][0]["points"] for p in res["players"])

    def board() -> dict | None:
        r = http.get(f"/api/leaderboard/sessions/{sid}/top", headers=quiz.auth)
        if r.status_code != 200:
            return None
        got = {e["user_id"]: e["score"] for e in r.json()["entries"]}
        return got if got == totals else None

    wait_until(board, timeout_s=15, every_s=0.25)  # a race's loser had it rebuilt

    async def outbox_rows() -> int:
        conn = await asyncpg.connect(get_settings().database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM outbox WHERE key = $1", sid)
        finally:
            await conn.close()

    assert asyncio.run(outbox_rows()) == len(players)


# --------------------------------------------------------------------------- PostgreSQL fails

# Holds the batch's write statement inside PostgreSQL (after the player rows and the
# answer rows, at the outbox row) so the test can kill its backend there.
_STALL = """
CREATE OR REPLACE FUNCTION test_stall_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$;
CREATE TRIGGER test_stall_{tag} BEFORE INSERT ON outbox FOR EACH ROW
  WHEN (NEW.key = '{sid}') EXECUTE FUNCTION test_stall_outbox();
"""


async def _kill_writes_mid_batch(
    port: int, players: list[dict], sid: str, qid: str, choice: int
) -> list[httpx.Response]:
    conn = await asyncpg.connect(get_settings().database_url)
    tag = uuid.UUID(sid).hex
    try:
        await conn.execute("SET lock_timeout = '20s'; " + _STALL.format(tag=tag, sid=sid))
    except asyncpg.LockNotAvailableError:
        for r in await conn.fetch(
            "SELECT pid, state, wait_event, now() - xact_start AS age, query"
            " FROM pg_stat_activity WHERE datname = current_database()"
        ):
            print(dict(r))
        raise
    killed = 0
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            sent = asyncio.gather(*[post_answer(c, p, sid, qid, choice) for p in players])
            task = asyncio.ensure_future(sent)
            deadline = time.monotonic() + 45
            while not task.done() and time.monotonic() < deadline:
                # Every batch of the session's answers stalls at its outbox row (only
                # the trigger sleeps), the player and answer rows already written in
                # the same statement.
                killed += await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE wait_event = 'PgSleep' AND datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                )
                await asyncio.sleep(0.2)
            replies = await task
        assert killed >= 1
        assert (
            await conn.fetchval("SELECT count(*) FROM answer WHERE session_id = $1", uuid.UUID(sid))
            == 0
        )
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE key = $1", sid) == 0
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM session_player WHERE session_id = $1"
                " AND (score <> 0 OR last_index <> -1)",
                uuid.UUID(sid),
            )
            == 0
        )
        return replies
    finally:
        await conn.execute(f"DROP TRIGGER IF EXISTS test_stall_{tag} ON outbox")
        await conn.close()


def test_postgres_failing_mid_batch_writes_nothing_and_every_client_can_retry(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    port = quiz_ports(stack_dir)[0]
    quiz, sid, players = live_game(http, api, 12)
    qid, right = quiz.question_ids[0], quiz.answer_of(0)

    failed = asyncio.run(_kill_writes_mid_batch(port, players, sid, qid, right))
    for r in failed:
        assert r.status_code == 503, r.text
        assert r.json()["status_code"] == 503 and r.headers.get("retry-after")

    retried = [answer(http, p, sid, qid, right) for p in players]
    assert [r.status_code for r in retried] == [200] * len(players), [r.text for r in retried]
    res = http.get(f"/api/quiz/sessions/{sid}/results", headers=quiz.auth).json()
    by_user = {p["user_id"]: p for p in res["players"]}
    for p, r in zip(players, retried, strict=True):
        mine = by_user[p["user"]["id"]]
        assert len(mine["answers"]) == 1 and mine["score"] == r.json()["score"] > 0


# --------------------------------------------------------------------------- a rebuild meanwhile


async def _rebuild_between_board_write_and_commit(
    quiz: Quiz, sid: str, players: list[dict]
) -> None:
    """One answer's batch, with a rebuild of its board (from PostgreSQL, which does
    not hold the answer yet) right after the batch's board write; then the batch the
    answer was put back into."""
    s = get_settings()
    await db.open_pool()
    conn = await asyncpg.connect(s.database_url)
    redis = Redis.from_url(s.redis_url)
    write_scores = ranking.write_scores

    async def write_then_rebuild(r: Redis, writes: dict) -> dict:
        placed = await write_scores(r, writes)
        assert await rebuild_board(redis, sid)
        return placed

    try:
        player, qid = players[0], quiz.question_ids[0]
        a = Answer(caller(player), uuid.UUID(sid), AnswerIn(qid, quiz.answer_of(0)), now_ms())
        ranking.write_scores = write_then_rebuild  # type: ignore[assignment]
        try:
            first = await score_batch(conn, redis, [a])
        finally:
            ranking.write_scores = write_scores  # type: ignore[assignment]
        assert first == [Retry()], "the rebuild replaced its board write: score it again"
        answers = "SELECT count(*) FROM answer WHERE session_id = $1"
        assert await conn.fetchval(answers, a.session_id) == 0
        again = await score_batch(conn, redis, [a])
        assert isinstance(again[0], bytes), again
        reply = json.loads(again[0])
        assert reply["points"] > 0
        stored = await conn.fetchval(
            "SELECT score FROM session_player WHERE session_id = $1 AND user_id = $2",
            a.session_id,
            uuid.UUID(a.caller.user_id),
        )
        on_board = await redis.zscore(board_key(sid), a.caller.user_id)
        assert on_board is not None and ranking.points_of(on_board) == stored == reply["score"]
        rebuilt = await conn.fetchval(
            "SELECT board_rebuilt FROM quiz_session WHERE id = $1", a.session_id
        )
        assert 0 < rebuilt < reply["version"], "the answer's write came after the rebuild"
        assert not await conn.fetchval(
            "SELECT board_dirty FROM quiz_session WHERE id = $1", a.session_id
        ), "a write the rebuild replaced leaves the board as it is: nothing to rebuild"
    finally:
        await redis.aclose()
        await conn.close()
        await db.close_pool()


def test_a_rebuild_between_an_answers_board_write_and_its_commit_keeps_the_answer(
    http: httpx.Client, api: Api
) -> None:
    quiz, sid, players = live_game(http, api, 2)
    asyncio.run(_rebuild_between_board_write_and_commit(quiz, sid, players))


# --------------------------------------------------------------------------- the pool


async def _pool_warms_every_connection() -> None:
    assert {quiz_answers._READ, quiz_answers._WRITE, outbox._CLAIM_FRESH} <= set(db._HOT)
    # A hot statement PostgreSQL cannot prepare fails the pool's start: every new
    # connection prepares them all before it is handed out.
    bad = db.hot("SELECT no_such_column FROM quiz_session")
    try:
        with pytest.raises(asyncpg.UndefinedColumnError):
            await db.open_pool()
    finally:
        db._HOT.remove(bad)
    await db.open_pool()
    try:
        pool = db.DB.pool
        assert pool is not None and pool.get_size() >= get_settings().db_pool_min
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close_pool()


def test_the_pool_opens_its_connections_warm(http: httpx.Client) -> None:
    asyncio.run(_pool_warms_every_connection())
