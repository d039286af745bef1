"""Helpers of the leaderboard and socket.io tests (no tests in here).

``LiveGame`` plays a live session through nginx with the real quiz service;
``Board`` writes sessions and answers the way the quiz service does (PostgreSQL
row, ``ranking.write_score``, SCORE_CHANGE) for tests of the consumer alone
(bursts, malformed records, rebuilds); ``Player`` is a python-socketio client that
records every ``leaderboard`` event with the time it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import socketio

from contracts import ScoreChange
from services.common.kafka import EventProducer
from services.common.ranking import write_score
from services.common.redis import get_redis
from services.common.settings import get_settings
from tests.conftest import Api
from tests.test_quiz_support import Quiz, join

QUESTIONS = [
    {
        "id": f"q{i}",
        "text": f"question {i}",
        "choices": ["a", "b", "c"],
        "answer": 0,
        "time_limit_s": 20,
        "points": 1000,
    }
    for i in range(3)
]


def sio_ports(stack_dir: Path) -> list[int]:
    """Ports of the socket.io processes of the test stack (sio-1, sio-2, ...)."""
    return json.loads((stack_dir / "stack.json").read_text())["layout"]["sio_ports"]


@dataclass
class Session:
    id: str
    host: dict
    players: list[dict]  # token pairs from POST /api/iam/guests
    created_ms: int = 0
    scores: dict[str, int] = field(default_factory=dict)

    def user(self, i: int) -> str:
        return self.players[i]["user"]["id"]


@contextlib.asynccontextmanager
async def open_board(pool_size: int = 4) -> AsyncIterator[Board]:
    """A ``Board`` with its own PostgreSQL pool and Kafka producer (closed after)."""
    pool = await asyncpg.create_pool(get_settings().database_url, min_size=1, max_size=pool_size)
    producer = EventProducer()
    await producer.start()
    try:
        yield Board(pool, producer)
    finally:
        await producer.stop()
        await pool.close()


class Board:
    """Makes sessions in PostgreSQL + Redis and plays answers into them.

    Writes what the quiz service writes for an accepted answer: the player's row,
    the Redis board (``ranking.write_score``) and a SCORE_CHANGE record.
    """

    def __init__(self, conn: asyncpg.Pool, producer: EventProducer):
        self.conn = conn
        self.producer = producer
        self.settings = get_settings()

    async def session(
        self, host: dict, players: list[dict], *, mode: str = "live", state: str = "running"
    ) -> Session:
        now = int(time.time() * 1000)
        quiz_id, session_id = uuid.uuid4(), uuid.uuid4()
        host_id = uuid.UUID(host["user"]["id"])
        await self.conn.execute(
            "insert into quiz (id, owner_id, title, public, questions) values ($1, $2, $3,"
            " false, $4::jsonb)",
            quiz_id,
            host_id,
            "realtime test",
            json.dumps(QUESTIONS),
        )
        await self.conn.execute(
            "insert into quiz_session (id, quiz_id, host_id, mode, state, code, created_ms)"
            " values ($1, $2, $3, $4, $5, $6, $7)",
            session_id,
            quiz_id,
            host_id,
            mode,
            state,
            f"t{uuid.uuid4().hex[:10]}",
            now,
        )
        s = Session(id=str(session_id), host=host, players=players, created_ms=now)
        for i, p in enumerate(players):
            await self.conn.execute(
                "insert into session_player (session_id, user_id, nickname, joined_ms,"
                " reached_ms) values ($1, $2, $3, $4, $5)",
                session_id,
                uuid.UUID(p["user"]["id"]),
                p["user"]["nickname"],
                now + i,
                i,
            )
            await write_score(
                get_redis(), s.id, p["user"]["id"], 0, i, nickname=p["user"]["nickname"]
            )
            s.scores[p["user"]["id"]] = 0
        return s

    async def answer(self, s: Session, user_id: str, points: int) -> int:
        """Add ``points`` to the player's total, as an accepted answer; returns the version."""
        total = s.scores[user_id] + points
        reached = int(time.time() * 1000) - s.created_ms
        await self.conn.execute(
            "update session_player set score = $3, reached_ms = $4"
            " where session_id = $1 and user_id = $2",
            uuid.UUID(s.id),
            uuid.UUID(user_id),
            total,
            reached,
        )
        _, _, version = await write_score(get_redis(), s.id, user_id, total, reached)
        s.scores[user_id] = total
        event = ScoreChange(
            answer_id=uuid.uuid4().hex,
            session_id=s.id,
            user_id=user_id,
            nickname="",
            question_id="q0",
            correct=True,
            points=points,
            total=total,
            answered_ms=int(time.time() * 1000),
        )
        await self.producer.send_many(
            self.settings.topic_score_change, [(s.id, msgspec.json.encode(event))]
        )
        return version

    async def expected_top(self, s: Session) -> list[tuple[str, int]]:
        """(user id, score) of the top 10 as PostgreSQL has it: score, then who reached it first."""
        rows = await self.conn.fetch(
            "select user_id, score from session_player where session_id = $1"
            # Equal composites (same points reached in the same millisecond): Redis
            # orders members in reverse lexical order, so the check does too.
            " order by score desc, reached_ms asc, user_id::text desc limit 10",
            uuid.UUID(s.id),
        )
        return [(str(r["user_id"]), r["score"]) for r in rows]


class Player:
    """A socket.io client that records ``leaderboard`` events (payload, arrival time)."""

    def __init__(self, token: str | None, transports: list[str] | None = None):
        self.token = token
        self.transports = transports or ["websocket"]
        self.client = socketio.AsyncClient(reconnection=False)
        self.boards: list[tuple[dict, float]] = []
        self.changed = asyncio.Event()
        self.client.on("leaderboard", self._on_board)

    async def _on_board(self, data: dict) -> None:
        self.boards.append((data, time.time()))
        self.changed.set()

    async def connect(self, url: str, *, via_query: bool = False) -> None:
        if via_query:
            sep = "&" if "?" in url else "?"
            await self.client.connect(
                f"{url}{sep}token={self.token}", transports=self.transports, wait_timeout=5
            )
        else:
            await self.client.connect(
                url, auth={"token": self.token}, transports=self.transports, wait_timeout=5
            )

    async def join(self, session_id: Any) -> dict:
        return await self.client.call("join", {"session_id": session_id}, timeout=5)

    async def call(self, event: str, *args: Any) -> Any:
        return await self.client.call(event, *args, timeout=5)

    def versions(self, session_id: str | None = None) -> list[int]:
        return [
            d["version"]
            for d, _ in self.boards
            if session_id is None or d["session_id"] == session_id
        ]

    async def wait_for_version(self, version: int, timeout: float = 10) -> dict:
        """The first received snapshot with at least ``version``."""
        deadline = time.monotonic() + timeout
        while True:
            for d, _ in self.boards:
                if d["version"] >= version:
                    return d
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no snapshot >= {version}; got {self.versions()}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if not self.client.connected:
            return
        if self.client.transport() == "polling":
            # A clean polling disconnect waits for the pending long-poll, which the
            # server only ends at its next ping (~20 s); closing the HTTP session ends it.
            await self.client.eio.disconnect(abort=True)
        else:
            await self.client.disconnect()


class LiveGame:
    """A live session run through nginx by the real quiz service: a host's quiz,
    guests joined with POST /sessions/join, answers with POST /answers."""

    def __init__(self, api: Api, players: int, questions: int = 3):
        self.quiz = Quiz(api, questions, limit_s=30)
        self.id: str = self.quiz.open_session("live")["id"]
        self.host = self.quiz.host
        self.players = [api.guest() for _ in range(players)]
        for p in self.players:
            r = join(api.http, p, session_id=self.id)
            assert r.status_code == 200, r.text
        self.index = -1
        # (version the answer wrote, time its reply arrived) of every accepted answer
        self.replies: list[tuple[int, float]] = []

    def user(self, i: int) -> str:
        return self.players[i]["user"]["id"]

    def advance(self) -> str:
        """Open the next question (or end the session); returns the open question's id."""
        result = self.quiz.advance(self.id)
        self.index = result["question_index"]
        return self.quiz.question_ids[self.index]

    async def answer(self, http: httpx.AsyncClient, i: int, correct: bool = True) -> dict:
        """Player ``i`` answers the open question through nginx."""
        qid = self.quiz.question_ids[self.index]
        right = self.quiz.answer_of(self.index)
        choice = right if correct else (right + 1) % 3
        r = await http.post(
            f"/api/quiz/sessions/{self.id}/answers",
            headers=Api.auth(self.players[i]),
            json={"question_id": qid, "choice": choice},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        self.replies.append((body["version"], time.time()))
        return body

    @property
    def last_version(self) -> int:
        return max(v for v, _ in self.replies)

    async def expected_top(self, db: asyncpg.Pool) -> list[tuple[str, int]]:
        """(user id, score) of the top 10 as PostgreSQL has it, checked against the
        answers: each player's score is the sum of their answers' points."""
        rows = await db.fetch(
            "select p.user_id, p.score, coalesce(sum(a.points), 0) as answered"
            " from session_player p left join answer a"
            "   on a.session_id = p.session_id and a.user_id = p.user_id"
            " where p.session_id = $1 group by p.id"
            " order by p.score desc, p.reached_ms asc, p.user_id::text desc",
            uuid.UUID(self.id),
        )
        for r in rows:
            assert r["score"] == r["answered"], dict(r)
        return [(str(r["user_id"]), r["score"]) for r in rows[:10]]


def latencies_ms(replies: list[tuple[int, float]], player: Player) -> list[float]:
    """For each answer: from its reply to the first `leaderboard` event at its version or later."""
    out = []
    for version, t_reply in replies:
        if version <= 0:
            continue
        got = [t for d, t in player.boards if d["version"] >= version]
        if got:
            out.append((min(got) - t_reply) * 1000)
    return out
