"""The answer key never reaches a player before the question closes.

A live game is played through nginx while every payload each player receives is
recorded: HTTP bodies (join, question, answers, leaderboard, quiz list) and
socket.io events and acks. Then every payload is walked: a field that carries
the correct choice (``answer`` or any such name), or the choice distribution,
may only appear for a question whose ``question_closed`` that player already
received (or in that very event). Question payloads may carry only the fields
of the contract Structs, so a new field cannot slip the key out unnoticed.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts import AnswerResult, QuestionOpened, QuestionOut
from tests.chaos.game import Game, Plan
from tests.chaos.player import Seen, SimPlayer
from tests.chaos.waiting import until

pytestmark = pytest.mark.stack

# Field names that would carry the key or hint at it.
KEY_FIELDS = {
    "answer",
    "answers_key",
    "answer_key",
    "answer_index",
    "correct_answer",
    "correct_choice",
    "correct_index",
    "correct_option",
    "right_choice",
    "solution",
    "distribution",
}
QUESTION_FIELDS = set(QuestionOut.__struct_fields__) | set(QuestionOpened.__struct_fields__)
ANSWER_REPLY_FIELDS = set(AnswerResult.__struct_fields__)


def _key_fields(obj: Any, path: str = "$") -> list[tuple[str, dict]]:
    """(path, the dict holding it) of every key field anywhere in ``obj``."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in KEY_FIELDS:
                found.append((f"{path}.{k}", obj))
            found += _key_fields(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _key_fields(v, f"{path}[{i}]")
    return found


def _question_payloads(seen: Seen) -> list[dict]:
    """The question objects inside one payload (event, join ack or HTTP body)."""
    p = seen.payload
    if not isinstance(p, dict):
        return []
    if "status_code" in p:
        return []  # an error body
    if seen.name == "question" or seen.name.endswith("/question"):
        return [p]
    if seen.name == "join ack" and isinstance(p.get("question"), dict):
        return [p["question"]]
    return []


def leaks(player: SimPlayer) -> list[str]:
    """Every payload this player saw that carried a key field too early."""
    problems = []
    closed: dict[str, float] = {}
    for s in sorted(player.seen, key=lambda s: s.t):
        if s.name == "question_closed" and isinstance(s.payload, dict):
            closed.setdefault(str(s.payload.get("question_id")), s.t)
        for path, holder in _key_fields(s.payload):
            qid = holder.get("question_id")
            if qid is None and isinstance(s.payload, dict):
                qid = s.payload.get("question_id")
            if qid is None or str(qid) not in closed:
                problems.append(f"{player.nickname} {s.channel} {s.name}: {path} = {holder}")
        for q in _question_payloads(s):
            extra = set(q) - QUESTION_FIELDS
            if extra:
                problems.append(f"{s.name}: question payload with extra fields {extra}")
        if s.name.endswith("/answers") and isinstance(s.payload, dict):
            if s.payload.get("status_code") is None and set(s.payload) - ANSWER_REPLY_FIELDS:
                extra = set(s.payload) - ANSWER_REPLY_FIELDS
                problems.append(f"answer reply with extra fields {extra}")
    return problems


async def _look_around(g: Game, p: SimPlayer) -> None:
    """What a curious client fetches: the question again, boards, the quiz list."""
    sid = g.session_id
    await p.request("GET", f"/api/quiz/sessions/{sid}/question")
    await p.request("GET", f"/api/leaderboard/sessions/{sid}/top")
    await p.request("GET", f"/api/leaderboard/sessions/{sid}/players/{p.user_id}")
    await p.request("GET", "/api/quiz/quizzes")
    r = await p.request("GET", f"/api/quiz/quizzes/{g.quiz_id}")
    assert r is not None and r.status_code == 403, f"quiz detail for a player: {r}"
    r = await p.request("GET", f"/api/quiz/sessions/{sid}/results")
    assert r is not None and r.status_code == 403, f"results for a player: {r}"


async def test_live_game_never_shows_a_player_the_key_early(base_url: str) -> None:
    g = Game(base_url, Plan(players=3, questions=3, mode="live", time_limit_s=5, seed=3))
    await g.setup(record_payloads=True)
    try:
        late: SimPlayer | None = None
        first: dict[str, int] = {}  # user -> index of its first `question` event
        for i in range(3):
            r = await g.http.post(
                f"/api/quiz/sessions/{g.session_id}/advance", headers=g.host_headers
            )
            assert r.status_code == 200, r.text

            def everyone_has_it(i: int = i) -> bool:
                return all(
                    p.stats.events["question"] >= i + 1 - first.get(p.user_id, 0) for p in g.players
                )

            assert await until(everyone_has_it, 10), (
                "not every player got the question event:"
                f" {[dict(p.stats.events) for p in g.players]}"
            )
            if i == 1:
                # A late joiner: its join ack carries the open question.
                tokens = (
                    await g.http.post("/api/iam/guests", json={"nickname": "latecomer"})
                ).json()
                late = SimPlayer(g.http, base_url, tokens, g.session_id, record_payloads=True)
                await late.join()
                await late.connect_socket()
                g.players.append(late)
                first[late.user_id] = 2  # its first `question` event is question 2
            for n, p in enumerate(g.players):
                q = await p.question()
                assert q is not None
                await _look_around(g, p)
                if n == 2:
                    continue  # this one never answers
                choice = g.correct_choice(q) if n == 0 else (g.correct_choice(q) + 1) % 4
                await p.answer(q["question_id"], [choice, choice])
                await _look_around(g, p)
            if i == 2:
                # The last question closes by its deadline, not by the host.
                assert await until(
                    lambda: all(p.stats.events["question_closed"] >= 3 for p in g.players[:3]),
                    g.plan.time_limit_s + 5,
                ), "question_closed not sent at the deadline"
        r = await g.http.post(f"/api/quiz/sessions/{g.session_id}/advance", headers=g.host_headers)
        assert r.status_code == 200, r.text
        assert await until(lambda: all(p.stats.events["session_ended"] for p in g.players), 10)
        for p in g.players:
            await _look_around(g, p)
        problems = [x for p in g.players for x in leaks(p)]
        assert not problems, "\n".join(problems[:20])
        # The walk saw the key where it belongs: in question_closed, after the close.
        closed = [s for p in g.players for s in p.seen if s.name == "question_closed"]
        assert closed and all("answer" in s.payload for s in closed)
        assert late is not None and any(s.name == "join ack" for s in late.seen)
    finally:
        await g.close()


async def test_self_paced_questions_never_carry_the_key(base_url: str) -> None:
    g = Game(base_url, Plan(players=2, questions=3, seed=4))
    await g.setup(record_payloads=True)
    try:
        for p in g.players:
            while (q := await p.question()) is not None:
                again = await p.question()  # asking again: same question, still no key
                assert again is not None and again["question_id"] == q["question_id"]
                await _look_around(g, p)
                await p.answer(q["question_id"], [g.correct_choice(q)])
        problems = [x for p in g.players for x in leaks(p)]
        assert not problems, "\n".join(problems[:20])
    finally:
        await g.close()
