"""Held results (``hold_results: true``), through nginx: while a live question is
open, nothing a player can read tells whether an answer was right (the reply,
its repeats, the board over HTTP, socket.io and the join ack); when it closes,
the board is released and a repeat returns the full reply. Without the option
the live board is unchanged (control).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import socketio

from contracts import AnswerResult
from services.quiz.held import held_reply
from tests.chaos.game import Game, Plan, started
from tests.chaos.player import close_socket
from tests.chaos.waiting import until

pytestmark = pytest.mark.stack


@pytest_asyncio.fixture
async def game(base_url: str) -> AsyncIterator[Game]:
    """A host with a 2-question quiz and 3 guests (the session is made by each test)."""
    async with started(base_url, Plan(players=3, questions=2, mode="live", time_limit_s=60)) as g:
        yield g


async def _session(g: Game, **options: Any) -> str:
    r = await g.http.post(
        "/api/quiz/sessions",
        json={"quiz_id": g.quiz_id, "mode": "live", **options},
        headers=g.host_headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["hold_results"] is bool(options.get("hold_results"))
    sid = r.json()["id"]
    for p in g.players:
        r = await g.http.post(
            "/api/quiz/sessions/join", json={"session_id": sid}, headers=p.headers
        )
        assert r.status_code == 200, r.text
    return sid


async def _advance(g: Game, sid: str) -> None:
    r = await g.http.post(f"/api/quiz/sessions/{sid}/advance", headers=g.host_headers)
    assert r.status_code == 200, r.text


async def _answer(g: Game, sid: str, i: int, qid: str, choice: int) -> dict:
    r = await g.http.post(
        f"/api/quiz/sessions/{sid}/answers",
        json={"question_id": qid, "choice": choice},
        headers=g.players[i].headers,
    )
    assert r.status_code == 200, r.text
    return r.json()


async def _question(g: Game, sid: str) -> dict:
    r = await g.http.get(f"/api/quiz/sessions/{sid}/question", headers=g.players[0].headers)
    assert r.status_code == 200, r.text
    return r.json()


async def _top(g: Game, sid: str) -> dict:
    r = await g.http.get(f"/api/leaderboard/sessions/{sid}/top", headers=g.players[2].headers)
    assert r.status_code == 200, r.text
    return r.json()


class Watcher:
    """A third player's socket: every `leaderboard` and `question_closed` it receives."""

    def __init__(self) -> None:
        self.boards: list[dict] = []
        self.closed: list[dict] = []
        self.client = socketio.AsyncClient(reconnection=False)
        self.client.on("leaderboard", self.boards.append)
        self.client.on("question_closed", self.closed.append)

    async def open(self, base_url: str, token: str, sid: str) -> dict:
        await self.client.connect(
            base_url, auth={"token": token}, transports=["websocket"], wait_timeout=10
        )
        ack = await self.client.call("join", {"session_id": sid}, timeout=5)
        assert ack["ok"] is True, ack
        return ack


def _scores(board: dict) -> dict[str, int]:
    return {e["user_id"]: e["score"] for e in board["entries"]}


async def test_held_results_reveal_nothing_until_the_question_closes(
    game: Game, base_url: str
) -> None:
    g = game
    sid = await _session(g, hold_results=True)
    watcher = Watcher()
    await watcher.open(base_url, g.players[2].tokens["access_token"], sid)
    try:
        await _advance(g, sid)
        q = await _question(g, sid)
        right = g.key_by_index[q["index"]]
        wrong = (right + 1) % len(q["choices"])
        replies = [
            await _answer(g, sid, 0, q["question_id"], right),
            await _answer(g, sid, 1, q["question_id"], wrong),
        ]
        # A repeat while open is held as well (and not scored twice).
        replies.append(await _answer(g, sid, 0, q["question_id"], right))
        for reply in replies:
            assert reply["held"] is True, reply
            assert (reply["correct"], reply["points"], reply["rank"], reply["score"]) == (
                False,
                0,
                0,
                0,
            ), reply
        # The board stands still: HTTP, a late join ack, and no room event moves it.
        await asyncio.sleep(2.0)  # time for the consumer to have published, were it live
        assert set(_scores(await _top(g, sid)).values()) == {0}
        late = Watcher()
        ack = await late.open(base_url, g.players[1].tokens["access_token"], sid)
        await close_socket(late.client)
        assert set(_scores(ack["leaderboard"]).values()) <= {0}, ack
        assert all(set(_scores(b).values()) <= {0} for b in watcher.boards), watcher.boards

        # The host closes the question: the board is released to the room.
        await _advance(g, sid)
        p0 = g.players[0].user_id
        assert await until(lambda: any(_scores(b).get(p0, 0) > 0 for b in watcher.boards), 10)
        assert watcher.closed and watcher.closed[0]["answer"] == right
        top = _scores(await _top(g, sid))
        assert top[p0] > 0 and top[g.players[1].user_id] == 0, top
        full = await _answer(g, sid, 0, q["question_id"], right)
        assert full["held"] is False and full["correct"] is True, full
        assert full["points"] == top[p0] and full["rank"] == 1, full
        # The last question: its points are on the final board at the end.
        q2 = await _question(g, sid)
        r2 = await _answer(g, sid, 1, q2["question_id"], g.key_by_index[q2["index"]])
        assert r2["held"] is True, r2
        ended = asyncio.get_running_loop().create_future()
        watcher.client.on(
            "session_ended", lambda ev: None if ended.done() else ended.set_result(ev)
        )
        await _advance(g, sid)
        final = _scores(await asyncio.wait_for(ended, 10))
        assert final[g.players[1].user_id] > 0, final
    finally:
        await close_socket(watcher.client)


async def test_without_the_option_the_board_stays_live(game: Game, base_url: str) -> None:
    g = game
    sid = await _session(g)
    await _advance(g, sid)
    q = await _question(g, sid)
    reply = await _answer(g, sid, 0, q["question_id"], g.key_by_index[q["index"]])
    assert reply["held"] is False and reply["correct"] is True and reply["points"] > 0, reply
    p0 = g.players[0].user_id

    async def moved() -> bool:
        return _scores(await _top(g, sid)).get(p0, 0) == reply["points"]

    for _ in range(50):
        if await moved():
            break
        await asyncio.sleep(0.1)
    assert await moved()


async def test_self_paced_sessions_cannot_hold(game: Game) -> None:
    r = await game.http.post(
        "/api/quiz/sessions",
        json={"quiz_id": game.quiz_id, "mode": "self_paced", "hold_results": True},
        headers=game.host_headers,
    )
    assert r.status_code == 422, r.text
    assert "hold_results" in r.json()["detail"]


def test_the_held_reply_tells_nothing_about_the_answer() -> None:
    full = msgspec.json.encode(
        AnswerResult(
            question_id="q1",
            correct=True,
            points=950,
            score=2950,
            rank=1,
            streak=3,
            elapsed_ms=120,
            version=77,
        )
    )
    held = msgspec.json.decode(held_reply(full))
    assert held == {
        "question_id": "q1",
        "correct": False,
        "points": 0,
        "score": 2000,
        "rank": 0,
        "streak": 0,
        "elapsed_ms": 120,
        "version": 0,
        "held": True,
    }
    wrong = msgspec.json.encode(
        AnswerResult(question_id="q1", correct=False, points=0, score=2000, rank=4, elapsed_ms=120)
    )
    # A right and a wrong answer at the same time and score look the same.
    assert held_reply(wrong) == held_reply(full)
