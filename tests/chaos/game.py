"""A game on the real stack: a host, a quiz, a session and simulated players.

The host knows the answer key (it wrote the quiz); players pick the right choice
with a fixed probability from a seeded generator, so scores differ between
players and runs are repeatable in what is asked, not in timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.player import SimPlayer
from tests.chaos.secrets import remember, remember_tokens


@dataclass
class Plan:
    """What to play. ``copies`` is how many times each answer is sent at once;
    every ``heavy_every``-th player sends ``heavy_copies`` instead."""

    players: int = 8
    questions: int = 30
    time_limit_s: int = 20
    mode: str = "self_paced"
    think_s: tuple[float, float] = (0.0, 0.0)
    copies: int = 1
    heavy_copies: int = 0
    heavy_every: int = 3
    repeat_with_other_choice: bool = False
    transports: tuple[str, ...] = ("websocket",)
    p_correct: float = 0.7
    seed: int = 8


@dataclass
class Game:
    base_url: str
    plan: Plan
    http: httpx.AsyncClient = field(init=False)
    host_tokens: dict = field(default_factory=dict)
    quiz_id: str = ""
    session_id: str = ""
    key_by_index: list[int] = field(default_factory=list)  # the answer key, by question index
    players: list[SimPlayer] = field(default_factory=list)
    last_accept_t: float = 0.0

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(20, connect=5),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        )
        self.rng = random.Random(self.plan.seed)

    @property
    def host_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.host_tokens['access_token']}"}

    async def _post(self, path: str, body: dict, headers: dict | None = None) -> dict:
        # Set-up calls retry 429 (a busy test stack shares one address's limits).
        for _ in range(50):
            r = await self.http.post(path, json=body, headers=headers or {})
            if r.status_code != 429:
                break
            await asyncio.sleep(float(r.headers.get("retry-after", 1)))
        assert r.status_code in (200, 201), f"POST {path}: {r.status_code} {r.text}"
        return r.json()

    async def setup(self, *, record_payloads: bool = False, connect: bool = True) -> None:
        """Host + quiz + session; players created, joined and (optionally) connected."""
        name = f"chaos{uuid.uuid4().hex[:10]}"
        password = f"pw-{uuid.uuid4().hex}"
        await self._post("/api/iam/users", {"username": name, "password": password})
        self.host_tokens = await self._post(
            "/api/iam/token", {"username": name, "password": password}
        )
        remember(password)
        remember_tokens(self.host_tokens)
        questions: list[dict[str, Any]] = []
        for i in range(self.plan.questions):
            n = 4
            questions.append(
                {
                    "text": f"Question {i + 1}?",
                    "choices": [f"choice {c}" for c in range(n)],
                    "answer": self.rng.randrange(n),
                    "time_limit_s": self.plan.time_limit_s,
                }
            )
        quiz = await self._post(
            "/api/quiz/quizzes",
            {"title": f"chaos {name}", "questions": questions},
            self.host_headers,
        )
        self.quiz_id = quiz["id"]
        session = await self._post(
            "/api/quiz/sessions",
            {"quiz_id": self.quiz_id, "mode": self.plan.mode},
            self.host_headers,
        )
        self.session_id = session["id"]
        self.key_by_index = [q["answer"] for q in questions]

        tokens = await asyncio.gather(
            *[
                self._post("/api/iam/guests", {"nickname": f"bot{i}-{uuid.uuid4().hex[:6]}"})
                for i in range(self.plan.players)
            ]
        )
        for t in tokens:
            remember_tokens(t)
        self.players = [
            SimPlayer(self.http, self.base_url, t, self.session_id, record_payloads=record_payloads)
            for t in tokens
        ]
        # Join one by one: join order is the tie-break for equal scores.
        for p in self.players:
            await p.join()
        if connect:
            transports = self.plan.transports
            await asyncio.gather(
                *[
                    p.connect_socket(transports[i % len(transports)])
                    for i, p in enumerate(self.players)
                ]
            )

    def correct_choice(self, question: dict) -> int:
        """The right choice of a question a player was handed (by its index)."""
        return self.key_by_index[int(question["index"])]

    def pick(self, question: dict) -> int:
        right = self.correct_choice(question)
        if self.rng.random() < self.plan.p_correct:
            return right
        return (right + 1 + self.rng.randrange(3)) % 4

    def copies_for(self, i: int, first: int) -> list[int]:
        """The choices one answer is sent with: the real one, then its repeats."""
        n = self.plan.copies
        if self.plan.heavy_copies and i % self.plan.heavy_every == 0:
            n = self.plan.heavy_copies
        if not self.plan.repeat_with_other_choice:
            return [first] * n
        return [first] + [(first + k) % 4 for k in range(1, n)]

    # ------------------------------------------------------------------ playing

    async def play_self_paced(self, stop: asyncio.Event, *, max_answers: int | None = None) -> None:
        """Every player answers its next question until ``stop``, the quiz ends, or
        it gave ``max_answers`` answers."""
        await asyncio.gather(
            *[self._player_loop(i, p, stop, max_answers) for i, p in enumerate(self.players)]
        )

    async def _player_loop(
        self, i: int, p: SimPlayer, stop: asyncio.Event, max_answers: int | None
    ) -> None:
        rng = random.Random(self.plan.seed * 1000 + i)
        repeats: dict[str, int] = {}
        given = 0
        while not stop.is_set() and (max_answers is None or given < max_answers):
            q = await p.question()
            if q is None or stop.is_set():
                return
            qid = q["question_id"]
            repeats[qid] = repeats.get(qid, 0) + 1
            if repeats[qid] > 3:
                return  # handed the same question again and again: refused for good
            lo, hi = self.plan.think_s
            if hi > 0:
                await asyncio.sleep(rng.uniform(lo, hi))
            first = self.pick(q)
            reply = await p.answer(qid, self.copies_for(i, first))
            given += 1
            if reply is not None:
                self.last_accept_t = time.monotonic()

    async def close(self) -> None:
        await asyncio.gather(*[p.close() for p in self.players])
        await self.http.aclose()

    # ------------------------------------------------------------------ totals

    def expected_scores(self) -> dict[str, int]:
        """user_id -> the sum of the points of every answer its client saw accepted."""
        return {p.user_id: p.accepted_points for p in self.players}

    def accepted_count(self) -> int:
        return sum(len(p.accepted) for p in self.players)


@contextlib.asynccontextmanager
async def started(base_url: str, plan: Plan, *, connect: bool = False) -> AsyncIterator[Game]:
    """A game set up (host, quiz, session, joined players; sockets when ``connect``),
    closed at the end."""
    g = Game(base_url, plan)
    await g.setup(connect=connect)
    try:
        yield g
    finally:
        await g.close()
