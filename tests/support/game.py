"""Quizzes and sessions for the tests: played through nginx by the real quiz service
(``Quiz``, ``LiveGame``), or written the way the quiz service writes them (``Board``:
PostgreSQL row, ``ranking.write_score``, SCORE_CHANGE) for tests of the consumer alone
(bursts, malformed records, rebuilds); SCORE_CHANGE records read back from Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import msgspec

from contracts import ScoreChange
from services.board.ranking import write_score
from services.common.kafka import EventProducer, make_consumer
from services.common.redis import get_redis
from services.common.settings import get_settings
from tests.support.api import Api, join, question


def score_change(**override: object) -> ScoreChange:
    """A SCORE_CHANGE record: placeholder fields, ``override`` the ones that matter."""
    fields: dict[str, object] = {
        "answer_id": "a",
        "session_id": "s",
        "user_id": "u",
        "nickname": "n",
        "question_id": "q",
        "correct": True,
        "points": 1,
        "total": 1,
        "answered_ms": 1,
    }
    return msgspec.convert({**fields, **override}, ScoreChange)


def questions(n: int, *, limit_s: int = 5, points: int = 1000, choices: int = 3) -> list[dict]:
    """``n`` questions; question i's answer is choice ``i % choices``."""
    return [
        {
            "text": f"Question {i}?",
            "choices": [f"c{j}" for j in range(choices)],
            "answer": i % choices,
            "time_limit_s": limit_s,
            "points": points,
        }
        for i in range(n)
    ]


class Quiz:
    """A quiz created by a fresh host, with its answer key."""

    def __init__(
        self,
        api: Api,
        n: int = 3,
        *,
        public: bool = False,
        limit_s: int = 5,
        points: int = 1000,
        title: str | None = None,
    ):
        self.api = api
        self.host = api.host()
        self.auth = Api.auth(self.host)
        self.title = title or f"quiz {uuid.uuid4().hex[:8]}"
        self.questions = questions(n, limit_s=limit_s, points=points)
        r = api.http.post(
            "/api/quiz/quizzes",
            headers=self.auth,
            json={"title": self.title, "public": public, "questions": self.questions},
        )
        assert r.status_code == 201, r.text
        self.created = r.json()
        self.id = self.created["id"]
        detail = api.http.get(f"/api/quiz/quizzes/{self.id}", headers=self.auth)
        assert detail.status_code == 200, detail.text
        self.question_ids: list[str] = detail.json()["question_ids"]

    def answer_of(self, index: int) -> int:
        return self.questions[index]["answer"]

    def open_session(self, mode: str = "live") -> dict:
        r = self.api.http.post(
            "/api/quiz/sessions", headers=self.auth, json={"quiz_id": self.id, "mode": mode}
        )
        assert r.status_code == 201, r.text
        return r.json()

    def advance(self, session_id: str) -> dict:
        r = self.api.http.post(f"/api/quiz/sessions/{session_id}/advance", headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()

    def self_paced_player(self) -> tuple[str, dict, str]:
        """A self-paced session, a guest joined to it and the question it gets first:
        (session id, the guest's tokens, question id)."""
        sid = self.open_session("self_paced")["id"]
        player = self.api.guest()
        assert join(self.api.http, player, session_id=sid).status_code == 200
        r = question(self.api.http, player, sid)
        assert r.status_code == 200, r.text
        return sid, player, r.json()["question_id"]


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


@dataclass
class Session:
    id: str
    host: dict
    players: list[dict]  # token pairs from POST /api/iam/guests
    created_ms: int = 0
    scores: dict[str, int] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)  # per player: Board.answer

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
        """Add ``points`` to the player's total, as an accepted answer; returns the version.

        One player's answers are serialized, as in the quiz service: concurrent calls
        for one player (a burst through ``asyncio.gather``) would otherwise each add to
        the same old total, and the pool's connections and Redis could keep different
        ones as the last write.
        """
        async with s.locks.setdefault(user_id, asyncio.Lock()):
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
        event = score_change(
            answer_id=uuid.uuid4().hex,
            session_id=s.id,
            user_id=user_id,
            nickname="",
            question_id="q0",
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


async def score_changes(
    session_ids: set[str], expected: int, timeout_s: float = 20.0, settle_s: float = 1.0
) -> list[ScoreChange]:
    """SCORE_CHANGE events of these sessions from the start of the topic.

    Reads until ``expected`` events arrived, then ``settle_s`` longer (so extra
    duplicates would show), or until ``timeout_s``.
    """
    # No consumer group: nothing to coordinate (a group's join can take seconds, longer
    # right after a broker restart); every partition is read from the start.
    consumer = make_consumer(get_settings().topic_score_change, group=None)
    await consumer.start()
    found: list[ScoreChange] = []
    try:
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() > settle_until:
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for rec in records:
                    if rec.key is not None and rec.key.decode() in session_ids:
                        found.append(msgspec.json.decode(rec.value, type=ScoreChange))
            if settle_until is None and len(found) >= expected:
                settle_until = time.monotonic() + settle_s
    finally:
        await consumer.stop()
    return found
