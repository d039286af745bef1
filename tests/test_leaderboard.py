"""Leaderboard service: the HTTP API through nginx, rebuilds from PostgreSQL, and the
consumer's TOP_10 records (real PostgreSQL, Redis, Kafka, nginx, IAM).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from contracts import Top10, decode_top10
from infra.stack import read_pids
from services.board.ranking import read_snapshots
from services.common.kafka import EventProducer, make_consumer
from services.common.redis import (
    ALIVE_KEY,
    board_key,
    board_names_key,
    board_version_key,
    get_redis,
)
from services.common.settings import get_settings
from services.leaderboard.publish import LingeringSend
from tests.chaos.waiting import until
from tests.support.api import Api
from tests.support.game import Board, Session, open_board, score_change

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it signals the consumer and makes it rebuild every open board.
pytestmark = [pytest.mark.stack, pytest.mark.alone]


@pytest.fixture(scope="module")
async def board() -> AsyncIterator[Board]:
    async with open_board() as b:
        yield b


async def next_top10(
    consumer: AIOKafkaConsumer, session_id: str, version: int, timeout: float
) -> Top10:
    """The first TOP_10 record of ``session_id`` at ``version`` or newer the consumer reads."""
    async with asyncio.timeout(timeout):
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                for rec in recs:
                    if rec.key == session_id.encode():
                        top10 = decode_top10(rec.value)
                        if top10.version >= version:
                            return top10


async def new_session(api: Api, board: Board, n: int) -> Session:
    return await board.session(api.host(), [api.guest() for _ in range(n)])


def top(http: httpx.Client, s: Session, tokens: dict, **params: Any) -> tuple[int, dict]:
    r = http.get(f"/api/leaderboard/sessions/{s.id}/top", params=params, headers=Api.auth(tokens))
    return r.status_code, r.json()


def pairs(body: dict) -> list[tuple[str, int]]:
    return [(e["user_id"], e["score"]) for e in body["entries"]]


async def test_top_and_rank_for_players_and_host(
    http: httpx.Client, api: Api, board: Board
) -> None:
    s = await new_session(api, board, 4)
    await board.answer(s, s.user(2), 800)
    await board.answer(s, s.user(0), 800)  # same score, reached later: ranks below 2
    await board.answer(s, s.user(3), 300)
    status, body = top(http, s, s.players[1])
    assert status == 200, body
    assert body["session_id"] == s.id and body["players"] == 4 and body["version"] > 0
    assert pairs(body) == await board.expected_top(s)
    assert [e["rank"] for e in body["entries"]] == [1, 2, 3, 4]
    assert body["entries"][0]["user_id"] == s.user(2)
    assert body["entries"][0]["nickname"] == s.players[2]["user"]["nickname"]
    # Equal scores: who reached them first ranks higher (player 2 before player 0).
    assert body["entries"][3]["user_id"] == s.user(1)

    status, host_view = top(http, s, s.host, limit=2)
    assert status == 200 and pairs(host_view) == pairs(body)[:2]

    r = http.get(
        f"/api/leaderboard/sessions/{s.id}/players/{s.user(0)}", headers=Api.auth(s.players[3])
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "session_id": s.id,
        "user_id": s.user(0),
        "rank": 2,
        "score": 800,
        "players": 4,
    }


async def test_who_may_read_and_bad_input(http: httpx.Client, api: Api, board: Board) -> None:
    s = await new_session(api, board, 1)
    player = s.players[0]
    assert http.get(f"/api/leaderboard/sessions/{s.id}/top").status_code == 401
    r = http.get(
        f"/api/leaderboard/sessions/{s.id}/top",
        headers={"Authorization": "Bearer forged.token.here"},
    )
    assert r.status_code == 401 and r.json()["status_code"] == 401
    outsider = api.guest()
    assert top(http, s, outsider)[0] == 403
    assert (
        http.get(
            f"/api/leaderboard/sessions/{s.id}/players/{s.user(0)}", headers=Api.auth(outsider)
        ).status_code
        == 403
    )
    missing = Session(id=str(uuid.uuid4()), host={}, players=[])
    assert top(http, missing, player)[0] == 404
    assert top(http, Session(id="not-a-uuid", host={}, players=[]), player)[0] == 404
    for limit in (0, 101, -1, "ten"):
        status, body = top(http, s, player, limit=limit)
        assert status == 422 and "limit" in str(body), (limit, body)
    assert top(http, s, player, limit=100)[0] == 200
    r = http.get(
        f"/api/leaderboard/sessions/{s.id}/players/{uuid.uuid4()}", headers=Api.auth(player)
    )
    assert r.status_code == 404


async def test_a_lost_board_is_rebuilt_from_postgres_on_read(
    http: httpx.Client, api: Api, board: Board
) -> None:
    s = await new_session(api, board, 3)
    await board.answer(s, s.user(1), 450)
    await board.answer(s, s.user(2), 900)
    before = (await read_snapshots(get_redis(), [s.id]))[s.id]
    assert before is not None
    await get_redis().delete(board_key(s.id), board_names_key(s.id), board_version_key(s.id))

    status, body = top(http, s, s.players[0])
    assert status == 200, body
    assert pairs(body) == await board.expected_top(s)
    assert body["entries"][0]["nickname"] == s.players[2]["user"]["nickname"]
    assert body["version"] > before.version, "versions only grow, also across a rebuild"
    r = http.get(f"/api/leaderboard/sessions/{s.id}/players/{s.user(1)}", headers=Api.auth(s.host))
    assert r.json()["rank"] == 2 and r.json()["score"] == 450


T = TypeVar("T")


async def wait_until(check: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_consumer_rebuilds_dirty_boards_and_a_redis_that_lost_its_data(
    board: Board, api: Api
) -> None:
    s = await new_session(api, board, 2)
    await board.answer(s, s.user(0), 600)
    redis = get_redis()
    # A write the quiz service could not make: Redis says 0, PostgreSQL 700.
    await board.conn.execute(
        "update session_player set score = 700 where session_id = $1 and user_id = $2",
        uuid.UUID(s.id),
        uuid.UUID(s.user(1)),
    )
    await board.conn.execute(
        "update quiz_session set board_dirty = true where id = $1", uuid.UUID(s.id)
    )
    s.scores[s.user(1)] = 700

    async def board_matches() -> bool:
        snap = (await read_snapshots(redis, [s.id]))[s.id]
        return snap is not None and [(e.user_id, e.score) for e in snap.entries] == (
            await board.expected_top(s)
        )

    await wait_until(board_matches)
    assert not await board.conn.fetchval(
        "select board_dirty from quiz_session where id = $1", uuid.UUID(s.id)
    )

    # Redis "restarted empty" for this session and lost the alive marker: the
    # consumer rebuilds every open session's board without any read asking for it.
    await redis.delete(ALIVE_KEY, board_key(s.id), board_names_key(s.id), board_version_key(s.id))

    # A tick that reads the missing board may rebuild it first; the watcher (every
    # second) must still notice the lost marker and set it again.
    async def rebuilt_and_marked() -> bool:
        return await board_matches() and bool(await redis.exists(ALIVE_KEY))

    await wait_until(rebuilt_and_marked)


async def test_top10_records_and_malformed_score_changes(board: Board, api: Api) -> None:
    """Garbage on SCORE_CHANGE is skipped; the next good record still gets its TOP_10."""
    s = await new_session(api, board, 2)
    settings = get_settings()
    consumer = make_consumer(settings.topic_top10, group=None, auto_offset_reset="latest")
    await consumer.start()
    try:
        await consumer.seek_to_end()
        await board.producer.send_many(
            settings.topic_score_change,
            [
                (s.id, b"not json"),
                (s.id, b'{"session_id": 5}'),
                (s.id, msgspec.json.encode({"schema_version": 1, "session_id": "x"})),
                (s.id, msgspec.json.encode(score_change(session_id="not-a-uuid"))),
            ],
        )
        version = await board.answer(s, s.user(1), 250)
        found = await next_top10(consumer, s.id, version, 10)
        assert found.session_id == s.id and found.players == 2
        assert [(e.user_id, e.score) for e in found.entries] == await board.expected_top(s)
        assert found.entries[0].nickname == s.players[1]["user"]["nickname"]
    finally:
        await consumer.stop()


async def test_top10_records_sent_together_are_one_produce_request(board: Board) -> None:
    """``LingeringSend``: the TOP_10 records of many sessions sent within the linger
    share one ``send_many``; every send returns once Kafka has its record, and they
    are all on the topic. A producer that cannot send fails every send of the batch."""
    settings = get_settings()
    keys = [str(uuid.uuid4()) for _ in range(20)]
    consumer = make_consumer(settings.topic_top10, group=None, auto_offset_reset="latest")
    await consumer.start()
    try:
        await consumer.seek_to_end()
        sender = LingeringSend(board.producer, settings.topic_top10, 0.05)
        await asyncio.gather(*(sender.send(k, b'{"test": true}') for k in keys))
        assert sender.requests == 1
        seen: set[str] = set()
        async with asyncio.timeout(10):
            while not set(keys) <= seen:
                batch = await consumer.getmany(timeout_ms=200)
                seen |= {rec.key.decode() for recs in batch.values() for rec in recs}
    finally:
        await consumer.stop()
    down = LingeringSend(EventProducer(settings), settings.topic_top10, 0.01)  # never started
    results = await asyncio.gather(*(down.send(k, b"{}") for k in keys[:3]), return_exceptions=True)
    assert down.requests == 1 and all(isinstance(r, RuntimeError) for r in results)


async def test_a_top10_record_sent_while_a_request_is_in_flight_is_sent_too(board: Board) -> None:
    """A record sent while the previous request waits for Kafka goes in the next
    request; before, it waited for some later send, and with none its session's
    ticks stopped (every later snapshot of that session was never sent)."""
    settings = get_settings()
    in_flight = asyncio.Event()

    class SlowAcks:  # the real producer, with acknowledgements 0.3 s late
        async def send_many(self, topic: str, records: list[tuple[str, bytes]]) -> None:
            in_flight.set()
            await asyncio.sleep(0.3)
            await board.producer.send_many(topic, records)

    sender = LingeringSend(SlowAcks(), settings.topic_top10, 0.01)  # type: ignore[arg-type]
    first = asyncio.create_task(sender.send(str(uuid.uuid4()), b'{"test": true}'))
    await in_flight.wait()
    async with asyncio.timeout(5):
        await sender.send(str(uuid.uuid4()), b'{"test": true}')
        await first
    assert sender.requests == 2


async def test_a_renewed_kafka_client_keeps_the_leaderboard_going(
    board: Board, api: Api, stack_dir: Path
) -> None:
    """The consumer replaces a wedged Kafka client by a new member of its group
    (``liveness.FetchWatch`` decides; SIGUSR1 asks at once): the new one is assigned
    the partitions and the next answer's TOP_10 goes out as before."""
    s = await new_session(api, board, 2)
    settings = get_settings()
    log = stack_dir / "logs" / "consumer-1.log"
    start = log.stat().st_size
    consumer = make_consumer(settings.topic_top10, group=None, auto_offset_reset="latest")
    await consumer.start()
    try:
        await consumer.seek_to_end()
        os.kill(read_pids(stack_dir)["consumer-1"], signal.SIGUSR1)

        def renewed() -> bool:
            with log.open("rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
            return "starting a new one" in text and "assigned partitions" in text

        assert await until(renewed, 30, interval=0.1), "the consumer did not renew its client"
        version = await board.answer(s, s.user(1), 250)
        found = await next_top10(consumer, s.id, version, 15)
        assert [e.score for e in found.entries][:1] == [250]
    finally:
        await consumer.stop()
