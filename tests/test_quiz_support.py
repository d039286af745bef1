"""Helpers of the quiz service tests (no tests in here): quizzes, sessions, answers
through nginx, and SCORE_CHANGE events read back from Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import msgspec

from contracts import ScoreChange
from services.common.kafka import make_consumer
from services.common.settings import get_settings
from tests.conftest import Api


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


def join(http: httpx.Client, player: dict, **body: str) -> httpx.Response:
    return http.post("/api/quiz/sessions/join", headers=Api.auth(player), json=body)


def question(http: httpx.Client, player: dict, session_id: str) -> httpx.Response:
    return http.get(f"/api/quiz/sessions/{session_id}/question", headers=Api.auth(player))


def answer(
    http: httpx.Client, player: dict, session_id: str, question_id: str, choice: int
) -> httpx.Response:
    return http.post(
        f"/api/quiz/sessions/{session_id}/answers",
        headers=Api.auth(player),
        json={"question_id": question_id, "choice": choice},
    )


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


def wait_until(check: Any, timeout_s: float = 5.0, every_s: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; returns it (or fails)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every_s)


async def async_sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.time()))
