"""Answers scored from what a quiz process remembers (services/quiz/answer_cache.py):
a player's later answers skip the batch's read, and a memory made stale by the other
quiz process never accepts an answer PostgreSQL would refuse, never refuses one it
would accept, and never counts anything twice (real PostgreSQL, Redis, both quiz
processes addressed directly)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.stack import read_layout
from tests.conftest import Api
from tests.support.api import answer, join, question
from tests.support.game import Quiz
from tests.support.stack import wait_until

pytestmark = pytest.mark.stack


@pytest.fixture
def quiz_procs(stack_dir: Path) -> Iterator[list[httpx.Client]]:
    """One client per quiz process, talking to it directly (no nginx)."""
    ports = read_layout(stack_dir).quiz_ports
    assert len(ports) >= 2
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=20) for p in ports]
    yield clients
    for c in clients:
        c.close()


def remembered(stack_dir: Path, name: str) -> float:
    """How many answers quiz process ``name`` scored without reading (its counter)."""
    port = read_layout(stack_dir).metrics_ports[name]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    m = re.search(r"^quizrt_answers_without_read_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def next_question(c: httpx.Client, player: dict, sid: str) -> str:
    r = question(c, player, sid)
    assert r.status_code == 200, r.text
    return r.json()["question_id"]


def stored(http: httpx.Client, sid: str, player: dict) -> int:
    """The player's total on the board, as the leaderboard service reads it."""
    uid = player["user"]["id"]
    r = http.get(f"/api/leaderboard/sessions/{sid}/players/{uid}", headers=Api.auth(player))
    assert r.status_code == 200, r.text
    return int(r.json()["score"])


def test_later_answers_of_a_player_skip_the_read(
    api: Api, stack_dir: Path, quiz_procs: list[httpx.Client]
) -> None:
    q1 = quiz_procs[0]
    quiz = Quiz(api, 4, limit_s=30)
    sid = quiz.open_session("self_paced")["id"]
    players = [api.guest() for _ in range(5)]
    for p in players:
        assert join(api.http, p, session_id=sid).status_code == 200
    before = remembered(stack_dir, "quiz-1")
    totals = {p["user"]["id"]: 0 for p in players}
    for _ in range(4):
        for p in players:
            qid = next_question(q1, p, sid)
            r = answer(q1, p, sid, qid, quiz.answer_of(quiz.question_ids.index(qid)))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["correct"] and body["points"] > 0
            totals[p["user"]["id"]] += body["points"]
            assert body["score"] == totals[p["user"]["id"]]
    # The first answer of each player was read; the three after it were remembered.
    assert remembered(stack_dir, "quiz-1") - before >= 3 * len(players)
    for p in players:
        assert stored(api.http, sid, p) == totals[p["user"]["id"]]


def test_a_player_who_answered_through_the_other_process_is_read_again(
    api: Api, stack_dir: Path, quiz_procs: list[httpx.Client]
) -> None:
    """quiz-1 remembers the player after question 0; question 1 goes through quiz-2;
    question 2 through quiz-1 again: its memory (last answered 0) is stale, the
    guarded write does not apply, and the answer is scored again from PostgreSQL."""
    q1, q2 = quiz_procs[0], quiz_procs[1]
    quiz = Quiz(api, 3, limit_s=30)
    sid = quiz.open_session("self_paced")["id"]
    p = api.guest()
    assert join(api.http, p, session_id=sid).status_code == 200
    replies = []
    for c in (q1, q2, q1):
        qid = next_question(c, p, sid)
        r = answer(c, p, sid, qid, quiz.answer_of(quiz.question_ids.index(qid)))
        assert r.status_code == 200, r.text
        replies.append(r)
    points = [r.json()["points"] for r in replies]
    assert all(x > 0 for x in points)
    last = replies[-1].json()
    assert last["score"] == sum(points)
    assert last["streak"] == 3  # three right answers in a row, counted from PostgreSQL
    assert stored(api.http, sid, p) == sum(points)
    # A repeat through quiz-1 of the answer quiz-2 took: the stored reply, byte for byte.
    again = answer(q1, p, sid, replies[1].json()["question_id"], 0)
    assert again.status_code == 200 and again.content == replies[1].content


def test_a_host_advancing_through_the_other_process_is_seen(
    api: Api, stack_dir: Path, quiz_procs: list[httpx.Client]
) -> None:
    """Live: quiz-1 remembers the session with question 0 open; the host advances
    through quiz-2. An answer to question 1 through quiz-1 is accepted (not refused
    from memory); a late answer to question 0 is refused (not accepted from memory,
    though its remembered deadline has not passed), and its total never counts."""
    q1, q2 = quiz_procs[0], quiz_procs[1]
    quiz = Quiz(api, 3, limit_s=30)
    sid = quiz.open_session("live")["id"]
    a, b = api.guest(), api.guest()
    for p in (a, b):
        assert join(api.http, p, session_id=sid).status_code == 200
    assert q1.post(f"/api/quiz/sessions/{sid}/advance", headers=quiz.auth).status_code == 200
    qids = quiz.question_ids
    first = answer(q1, a, sid, qids[0], quiz.answer_of(0))
    assert first.status_code == 200, first.text
    # b answered nothing yet; make quiz-1 remember b too (a wrong answer to q0).
    assert answer(q1, b, sid, qids[0], (quiz.answer_of(0) + 1) % 3).status_code == 200
    assert q2.post(f"/api/quiz/sessions/{sid}/advance", headers=quiz.auth).status_code == 200
    second = answer(q1, a, sid, qids[1], quiz.answer_of(1))
    assert second.status_code == 200, second.text
    assert second.json()["score"] == first.json()["points"] + second.json()["points"]
    # quiz-1 read the session again for that answer; make its memory stale once more.
    assert q2.post(f"/api/quiz/sessions/{sid}/advance", headers=quiz.auth).status_code == 200
    late = answer(q1, b, sid, qids[1], quiz.answer_of(1))  # question 1 closed by quiz-2
    assert late.status_code == 409, late.text
    # The board may have taken b's total before PostgreSQL refused it; it is rebuilt
    # (the session was marked dirty) and keeps only what was committed.
    wait_until(lambda: stored(api.http, sid, b) == 0 or None, 10)
    assert stored(api.http, sid, a) == second.json()["score"]
    time.sleep(0.5)
    assert stored(api.http, sid, b) == 0
