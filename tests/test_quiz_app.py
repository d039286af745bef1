"""The quiz service's HTTP app in the test process (AsyncTestClient), beside the
real-stack tests through nginx: routing, validation and the one error mapper with
fakes in place of PostgreSQL and Redis, and the routes end to end on the stack's
real PostgreSQL and Redis without nginx, granian or IAM in between."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from litestar.di import Provide

from services.iam.keys import KeyRing
from services.quiz.controllers import QuizController
from tests.support.inprocess import bearer, serve, trusted_ring, user_of, value

SESSION = "00000000-0000-4000-8000-000000000001"


class Untouched:
    """A connection or Redis client the request must not use."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the route used {name} of a store it must not need")


class GuessedTooOften:
    """Redis as it is for an address past its wrong join codes (42 s left)."""

    def pipeline(self, transaction: bool = False) -> GuessedTooOften:
        return self

    def get(self, key: str) -> None: ...

    def ttl(self, key: str) -> None: ...

    async def execute(self) -> list[Any]:
        return [b"9999", 42]


async def _no_database() -> AsyncIterator[Any]:
    raise ConnectionRefusedError("connect call failed")
    yield  # a generator dependency, as the real one  # pragma: no cover


@pytest.fixture
def ring() -> Iterator[KeyRing]:
    with trusted_ring() as r:
        yield r


@pytest.fixture
async def faked() -> AsyncIterator[httpx.AsyncClient]:
    fakes = {"conn": value(Untouched()), "redis": value(Untouched())}
    async with serve("quiz", [QuizController], fakes) as c:
        yield c


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status_code"] == status and isinstance(body["detail"], str)
    return body


async def test_routing_and_tokens_answer_the_one_error_body(
    faked: httpx.AsyncClient, ring: KeyRing
) -> None:
    assert error(await faked.get("/api/quiz/nothing-here"), 404) == {
        "status_code": 404,
        "detail": "Not Found",
    }
    error(await faked.put("/api/quiz/quizzes", json={}), 405)
    assert error(await faked.get("/api/quiz/quizzes"), 401)["detail"] == "Missing bearer token"
    forged = {"Authorization": "Bearer not.a.jwt"}
    assert error(await faked.get("/api/quiz/quizzes", headers=forged), 401)["detail"] == (
        "malformed token"
    )
    player = bearer(ring)
    r = await faked.post("/api/quiz/quizzes", json={"title": "t"}, headers=player)
    assert error(r, 403) == {"status_code": 403, "detail": "Only hosts may do this"}


async def test_bodies_are_checked_before_any_store_is_used(
    faked: httpx.AsyncClient, ring: KeyRing
) -> None:
    player = bearer(ring)
    join = "/api/quiz/sessions/join"
    r = await faked.post(join, content=b"{not json", headers=player)
    assert error(r, 400)["detail"].startswith("JSON is malformed")
    body = error(await faked.post(join, json={"session_id": 5}, headers=player), 422)
    assert "(field `session_id`)" in body["detail"] and body["extra"][0]["key"] == "session_id"
    answer = {"question_id": "q0", "choice": "1"}  # strict: "1" is no integer
    body = error(
        await faked.post(f"/api/quiz/sessions/{SESSION}/answers", json=answer, headers=player), 422
    )
    assert "(field `choice`)" in body["detail"]
    r = await faked.get("/api/quiz/quizzes?limit=0", headers=player)
    assert error(r, 422)["detail"] == "Expected `int` >= 1 (field `limit`)"


async def test_a_quiz_error_answers_its_status_and_detail(
    faked: httpx.AsyncClient, ring: KeyRing
) -> None:
    r = await faked.get("/api/quiz/sessions/not-an-id/question", headers=bearer(ring))
    assert error(r, 404) == {"status_code": 404, "detail": "No such session"}


async def test_postgres_unreachable_is_503_with_retry_after(ring: KeyRing) -> None:
    deps = {"conn": Provide(_no_database), "redis": value(Untouched())}
    async with serve("quiz", [QuizController], deps) as c:
        r = await c.get("/api/quiz/quizzes", headers=bearer(ring))
    assert error(r, 503) == {"status_code": 503, "detail": "Database unavailable, retry later"}
    assert r.headers["retry-after"] == "1"


async def test_an_address_guessing_codes_gets_429_with_the_time_left(ring: KeyRing) -> None:
    deps = {"conn": value(Untouched()), "redis": value(GuessedTooOften())}
    async with serve("quiz", [QuizController], deps) as c:
        r = await c.post("/api/quiz/sessions/join", json={"code": "123456"}, headers=bearer(ring))
    assert error(r, 429) == {
        "status_code": 429,
        "detail": "Too many wrong join codes from this address, retry later",
    }
    assert r.headers["retry-after"] == "42"


class CountedConnections:
    """A ``conn`` dependency that counts what it hands out and gets back."""

    def __init__(self) -> None:
        self.taken = self.returned = 0

    async def __call__(self) -> AsyncIterator[Any]:
        self.taken += 1
        try:
            yield Untouched()
        finally:
            self.returned += 1


async def test_a_refused_call_takes_no_connection_and_every_one_comes_back(
    ring: KeyRing,
) -> None:
    pool = CountedConnections()
    deps = {"conn": Provide(pool), "redis": value(Untouched())}
    async with serve("quiz", [QuizController], deps) as c:
        for headers in ({}, {"Authorization": "Bearer not.a.jwt"}):
            error(await c.get("/api/quiz/quizzes", headers=headers), 401)
        assert pool.taken == 0, "the token is checked (a guard) before a connection is taken"
        for _ in range(5):  # the handler fails on the connection: it comes back all the same
            error(await c.get("/api/quiz/quizzes", headers=bearer(ring)), 500)
        assert (pool.taken, pool.returned) == (5, 5)


# ------------------------------------------------------------------ on the real stores


@pytest.fixture
async def quiz_app() -> AsyncIterator[httpx.AsyncClient]:
    async with serve("quiz", [QuizController], real=True) as c:
        yield c


QUIZ = {
    "title": "in-process",
    "questions": [
        {"text": "1 + 1?", "choices": ["1", "2"], "answer": 1, "time_limit_s": 30},
        {"text": "2 + 2?", "choices": ["4", "5"], "answer": 0, "time_limit_s": 30},
    ],
}


@pytest.mark.stack
async def test_a_live_session_in_process(quiz_app: httpx.AsyncClient, ring: KeyRing) -> None:
    c = quiz_app
    host, player, outsider = bearer(ring, "host"), bearer(ring), bearer(ring)
    r = await c.post("/api/quiz/quizzes", json=QUIZ, headers=host)
    assert r.status_code == 201, r.text
    quiz_id = r.json()["id"]
    assert (await c.get(f"/api/quiz/quizzes/{quiz_id}", headers=host)).json()["id"] == quiz_id
    r = await c.get(f"/api/quiz/quizzes/{quiz_id}", headers=bearer(ring, "host"))
    assert error(r, 403)["detail"] == "Only the quiz's host may read its answers"

    held = {"quiz_id": quiz_id, "mode": "self_paced", "hold_results": True}
    body = error(await c.post("/api/quiz/sessions", json=held, headers=host), 422)
    assert body == {
        "status_code": 422,
        "detail": "Only live sessions can hold results (field `hold_results`)",
        "extra": [{"key": "hold_results", "message": "Only live sessions can hold results"}],
    }
    r = await c.post("/api/quiz/sessions", json={"quiz_id": quiz_id, "mode": "live"}, headers=host)
    assert r.status_code == 201, r.text
    session = r.json()
    sid = session["id"]

    r = await c.post("/api/quiz/sessions/join", json={"code": session["code"]}, headers=player)
    assert r.status_code == 200 and r.json()["session_id"] == sid, r.text
    r = await c.post("/api/quiz/sessions/join", json={"session_id": sid}, headers=host)
    assert error(r, 403)["detail"].startswith("The host cannot join as a player")
    r = await c.get(f"/api/quiz/sessions/{sid}/question", headers=player)
    assert error(r, 409)["detail"] == "No question is open"
    r = await c.post(f"/api/quiz/sessions/{sid}/advance", headers=bearer(ring, "host"))
    assert error(r, 403)["detail"] == "Only the session's host may advance it"

    r = await c.post(f"/api/quiz/sessions/{sid}/advance", headers=host)
    assert r.json() == {"state": "running", "question_index": 0}, r.text
    question = (await c.get(f"/api/quiz/sessions/{sid}/question", headers=player)).json()
    assert question["index"] == 0 and "answer" not in question
    r = await c.get(f"/api/quiz/sessions/{sid}/question", headers=outsider)
    assert error(r, 403)["detail"] == "Join the session first"
    answer = {"question_id": question["question_id"], "choice": 1}
    r = await c.post(f"/api/quiz/sessions/{sid}/answers", json=answer, headers=player)
    assert r.status_code == 200 and r.json()["correct"] is True, r.text
    again = await c.post(f"/api/quiz/sessions/{sid}/answers", json=answer, headers=player)
    assert again.content == r.content, "a repeat returns the first reply"

    for _ in range(2):  # question 1, then the end
        assert (await c.post(f"/api/quiz/sessions/{sid}/advance", headers=host)).status_code == 200
    r = await c.post(f"/api/quiz/sessions/{sid}/advance", headers=host)
    assert error(r, 409)["detail"] == "The session has ended"
    r = await c.post("/api/quiz/sessions/join", json={"session_id": sid}, headers=outsider)
    assert error(r, 409)["detail"] == "The session has ended"

    results = await c.get(f"/api/quiz/sessions/{sid}/results", headers=host)
    assert results.status_code == 200, results.text
    players = results.json()["players"]
    assert [p["user_id"] for p in players] == [user_of(player)] and players[0]["score"] > 0
    r = await c.get(f"/api/quiz/sessions/{sid}/results", headers=player)
    assert error(r, 403)["detail"] == "Only the session's host may read its results"
    csv = await c.get(f"/api/quiz/sessions/{sid}/results?format=csv", headers=host)
    assert csv.headers["content-type"].startswith("text/csv")
    assert f"player-{user_of(player)[:6]}" in csv.text
