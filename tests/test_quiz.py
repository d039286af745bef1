"""Quiz service through nginx with the real PostgreSQL, Redis and Kafka: authoring and
validation, the public list, self-paced and live sessions end to end (late join,
exact points, streaks), duplicate and concurrent answers, deadlines, wrong sessions,
results as JSON and CSV, and one SCORE_CHANGE per accepted answer.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from services.quiz.scoring import score_answer
from tests.support.api import Api, answer, join, question
from tests.support.codes import free_codes
from tests.support.game import Quiz, questions, score_changes
from tests.support.stack import wait_until

pytestmark = pytest.mark.stack


def expected_points(
    reply: dict, correct: bool, limit_s: int, streak_before: int, points: int = 1000
) -> int:
    """The formula applied to the elapsed time the server measured."""
    return score_answer(correct, reply["elapsed_ms"], limit_s, points, streak_before)[0]


# --------------------------------------------------------------------------- content


def test_create_quiz_validation_names_the_field(http: httpx.Client, api: Api) -> None:
    host = Api.auth(api.host())
    ok = {"title": "t", "questions": questions(2)}
    r = http.post("/api/quiz/quizzes", headers=host, json=ok)
    assert r.status_code == 201, r.text
    assert r.json()["question_count"] == 2 and r.json()["title"] == "t"
    assert r.json()["open_session_id"] is None  # not public: no standing session

    bad_answer: dict[str, Any] = {"title": "t", "questions": questions(2)}
    bad_answer["questions"][1]["answer"] = 3  # 3 choices: 0..2
    r = http.post("/api/quiz/quizzes", headers=host, json=bad_answer)
    assert r.status_code == 422, r.text
    assert "questions[1].answer" in r.json()["detail"]

    cases: dict[str, dict[str, Any]] = {
        "questions[0].choices": {"choices": ["only one"]},
        "questions[0].time_limit_s": {"time_limit_s": 4},
        "questions[0].points": {"points": -1},
    }
    for field, change in cases.items():
        body = {"title": "t", "questions": [{**questions(1)[0], **change}]}
        r = http.post("/api/quiz/quizzes", headers=host, json=body)
        assert r.status_code == 422, (field, r.text)
        assert field in r.json()["detail"], (field, r.text)
    seven = {"title": "t", "questions": [{**questions(1)[0], "choices": list("abcdefg")}]}
    assert http.post("/api/quiz/quizzes", headers=host, json=seven).status_code == 422
    assert (
        http.post(
            "/api/quiz/quizzes", headers=host, json={"title": "t", "questions": []}
        ).status_code
        == 422
    )
    r = http.post(
        "/api/quiz/quizzes",
        headers=host,
        content=b'{"title": ',
    )
    assert r.status_code == 400, r.text

    guest = Api.auth(api.guest())
    assert http.post("/api/quiz/quizzes", headers=guest, json=ok).status_code == 403
    assert http.post("/api/quiz/quizzes", json=ok).status_code == 401


def test_quiz_detail_and_sessions_only_for_its_host(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 2)
    r = http.get(f"/api/quiz/quizzes/{quiz.id}", headers=quiz.auth)
    assert [q["answer"] for q in r.json()["questions"]] == [0, 1]
    assert len(set(quiz.question_ids)) == 2
    other_host = Api.auth(api.host())
    guest = Api.auth(api.guest())
    for who in (other_host, guest):
        assert http.get(f"/api/quiz/quizzes/{quiz.id}", headers=who).status_code == 403
        r = http.post("/api/quiz/sessions", headers=who, json={"quiz_id": quiz.id})
        assert r.status_code == 403, r.text
    assert http.get(f"/api/quiz/quizzes/{uuid.uuid4()}", headers=quiz.auth).status_code == 404
    assert http.get("/api/quiz/quizzes/not-an-id", headers=quiz.auth).status_code == 404
    r = http.post("/api/quiz/sessions", headers=quiz.auth, json={"quiz_id": str(uuid.uuid4())})
    assert r.status_code == 404
    r = http.post(
        "/api/quiz/sessions", headers=quiz.auth, json={"quiz_id": quiz.id, "mode": "turbo"}
    )
    assert r.status_code == 422 and "mode" in r.json()["detail"]


def test_public_list_has_open_sessions_and_never_answers(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 3, public=True)
    open_id = quiz.created["open_session_id"]
    assert open_id
    guest = Api.auth(api.guest())

    def listed() -> dict | None:  # nginx caches the list for 2 s
        r = http.get("/api/quiz/quizzes", headers=guest)
        assert r.status_code == 200, r.text
        return next((i for i in r.json()["items"] if i["id"] == quiz.id), None)

    item = wait_until(listed, timeout_s=5)
    assert item == {
        "id": quiz.id,
        "title": quiz.title,
        "question_count": 3,
        "open_session_id": open_id,
    }
    r = http.get("/api/quiz/quizzes", headers=guest)
    assert '"answer"' not in r.text and "choices" not in r.text
    assert http.get("/api/quiz/quizzes").status_code == 401


# --------------------------------------------------------------------------- self-paced


def test_self_paced_end_to_end(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 3, public=True, limit_s=5)
    sid = quiz.created["open_session_id"]
    player = api.guest()
    r = join(http, player, session_id=sid)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "session_id": sid,
        "mode": "self_paced",
        "state": "running",
        "question_count": 3,
        "title": quiz.title,
    }
    assert join(http, player, session_id=sid).json() == r.json()  # twice: harmless
    qids = quiz.question_ids

    # Not handed out yet: refused.
    assert answer(http, player, sid, qids[0], 0).status_code == 409

    q = question(http, player, sid).json()
    assert (q["question_id"], q["index"], q["count"]) == (qids[0], 0, 3)
    assert "answer" not in q and q["choices"] == ["c0", "c1", "c2"]
    assert q["deadline_ms"] - q["server_time_ms"] <= 5000
    again = question(http, player, sid).json()
    assert again["deadline_ms"] == q["deadline_ms"]  # the clock does not restart

    assert answer(http, player, sid, qids[1], 1).status_code == 409  # not given yet

    first = answer(http, player, sid, qids[0], quiz.answer_of(0))
    assert first.status_code == 200, first.text
    a0 = first.json()
    assert a0["correct"] and a0["points"] == expected_points(a0, True, 5, 0)
    assert (a0["score"], a0["rank"], a0["streak"]) == (a0["points"], 1, 1)
    repeat = answer(http, player, sid, qids[0], 2)
    assert repeat.status_code == 200 and repeat.content == first.content

    q1 = question(http, player, sid).json()
    assert q1["index"] == 1
    a1 = answer(http, player, sid, qids[1], quiz.answer_of(1) + 1).json()
    assert (a1["correct"], a1["points"], a1["streak"], a1["score"]) == (False, 0, 0, a0["score"])

    q2 = question(http, player, sid).json()
    assert q2["index"] == 2
    a2 = answer(http, player, sid, qids[2], quiz.answer_of(2)).json()
    assert a2["points"] == expected_points(a2, True, 5, 0)  # the wrong answer ended the streak
    assert a2["score"] == a0["score"] + a2["points"]

    done = question(http, player, sid)
    assert done.status_code == 409, done.text


# --------------------------------------------------------------------------- live


def test_live_end_to_end_with_late_join_results_and_events(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 3, limit_s=5)
    qids = quiz.question_ids
    s = quiz.open_session("live")
    sid = s["id"]
    assert s["state"] == "lobby" and s["mode"] == "live" and len(s["code"]) == 6
    assert s["code"].isdigit()
    p1, p2 = api.guest(), api.guest()

    r = join(http, p1, code=s["code"])
    assert r.status_code == 200, r.text
    assert (r.json()["session_id"], r.json()["state"]) == (sid, "lobby")
    assert join(http, quiz.host, code=s["code"]).status_code == 403  # the host watches
    assert join(http, p1, code=asyncio.run(free_codes(1))[0]).status_code == 404
    assert question(http, p1, sid).status_code == 409  # lobby: nothing open
    assert answer(http, p1, sid, qids[0], 0).status_code == 409
    r = http.post(f"/api/quiz/sessions/{sid}/advance", headers=Api.auth(p1))
    assert r.status_code == 403

    assert quiz.advance(sid) == {"state": "running", "question_index": 0}
    q0 = question(http, p1, sid).json()
    assert (q0["question_id"], q0["index"], q0["answered"]) == (qids[0], 0, False)
    assert "answer" not in q0
    a = answer(http, p1, sid, qids[0], quiz.answer_of(0))
    p1_0 = a.json()
    assert p1_0["points"] == expected_points(p1_0, True, 5, 0) and p1_0["streak"] == 1
    assert question(http, p1, sid).json()["answered"] is True
    assert answer(http, p1, sid, qids[0], 2).content == a.content  # repeat: the first reply

    assert quiz.advance(sid) == {"state": "running", "question_index": 1}
    # A late joiner joins the running session and answers from the current question on.
    r = join(http, p2, code=s["code"])
    assert r.status_code == 200 and r.json()["state"] == "running"
    assert question(http, p2, sid).json()["index"] == 1
    assert answer(http, p2, sid, qids[0], quiz.answer_of(0)).status_code == 409  # closed
    time.sleep(1.0)
    p1_1 = answer(http, p1, sid, qids[1], quiz.answer_of(1) + 1).json()
    assert (p1_1["correct"], p1_1["points"], p1_1["streak"]) == (False, 0, 0)
    p2_1 = answer(http, p2, sid, qids[1], quiz.answer_of(1)).json()
    assert p2_1["elapsed_ms"] >= 1000
    assert p2_1["points"] == expected_points(p2_1, True, 5, 0) < 1000

    assert quiz.advance(sid) == {"state": "running", "question_index": 2}
    p2_2 = answer(http, p2, sid, qids[2], quiz.answer_of(2)).json()
    assert p2_2["points"] == expected_points(p2_2, True, 5, 1)  # second in a row: +100
    assert p2_2["streak"] == 2
    p1_2 = answer(http, p1, sid, qids[2], quiz.answer_of(2)).json()
    assert p1_2["points"] == expected_points(p1_2, True, 5, 0)

    assert quiz.advance(sid) == {"state": "ended", "question_index": 2}
    r = http.post(f"/api/quiz/sessions/{sid}/advance", headers=quiz.auth)
    assert r.status_code == 409
    assert question(http, p1, sid).status_code == 409

    totals = {
        p1["user"]["id"]: p1_0["points"] + p1_2["points"],
        p2["user"]["id"]: p2_1["points"] + p2_2["points"],
    }
    assert p1_2["score"] == totals[p1["user"]["id"]]
    assert p2_2["score"] == totals[p2["user"]["id"]]

    r = http.get(f"/api/quiz/sessions/{sid}/results", headers=quiz.auth)
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["session_id"], res["quiz_id"], res["state"]) == (sid, quiz.id, "ended")
    ranked = sorted(totals, key=lambda u: -totals[u])
    assert [p["user_id"] for p in res["players"]] == ranked
    assert [p["rank"] for p in res["players"]] == [1, 2]
    by_user = {p["user_id"]: p for p in res["players"]}
    assert [a["question_id"] for a in by_user[p1["user"]["id"]]["answers"]] == [
        qids[0],
        qids[1],
        qids[2],
    ]
    assert [a["points"] for a in by_user[p2["user"]["id"]]["answers"]] == [
        p2_1["points"],
        p2_2["points"],
    ]

    r = http.get(f"/api/quiz/sessions/{sid}/results?format=csv", headers=quiz.auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["rank", "nickname", "score", "correct", "q1", "q2", "q3"]
    p1_row = next(row for row in rows[1:] if row[1] == p1["user"]["nickname"])
    assert p1_row[2:] == [
        str(totals[p1["user"]["id"]]),
        "2",
        str(p1_0["points"]),
        "0",
        str(p1_2["points"]),
    ]
    p2_row = next(row for row in rows[1:] if row[1] == p2["user"]["nickname"])
    assert p2_row[3:] == ["2", "", str(p2_1["points"]), str(p2_2["points"])]
    assert http.get(f"/api/quiz/sessions/{sid}/results", headers=Api.auth(p1)).status_code == 403

    # One SCORE_CHANGE per accepted answer (repeats are not events), keyed by session.
    events = asyncio.run(score_changes({sid}, expected=5))
    assert len(events) == 5, events
    assert len({e.answer_id for e in events}) == 5
    got = {(e.user_id, e.question_id): (e.points, e.total) for e in events}
    u1, u2 = p1["user"]["id"], p2["user"]["id"]
    assert got == {
        (u1, qids[0]): (p1_0["points"], p1_0["score"]),
        (u1, qids[1]): (0, p1_0["score"]),
        (u1, qids[2]): (p1_2["points"], p1_2["score"]),
        (u2, qids[1]): (p2_1["points"], p2_1["score"]),
        (u2, qids[2]): (p2_2["points"], p2_2["score"]),
    }


# --------------------------------------------------------------------------- answers


async def _submit_together(
    base_url: str, player: dict, sid: str, qid: str, n: int
) -> list[httpx.Response]:
    """``n`` answers to one question sent at once on ``n`` connections."""
    async with httpx.AsyncClient(
        base_url=base_url, timeout=20, limits=httpx.Limits(max_connections=n)
    ) as client:
        return await asyncio.gather(
            *[
                client.post(
                    f"/api/quiz/sessions/{sid}/answers",
                    headers=Api.auth(player),
                    json={"question_id": qid, "choice": i % 3},
                )
                for i in range(n)
            ]
        )


def test_twenty_concurrent_submissions_score_once(
    base_url: str, http: httpx.Client, api: Api
) -> None:
    quiz = Quiz(api, 1, limit_s=20)
    sid, player, qid = quiz.self_paced_player()
    replies = asyncio.run(_submit_together(base_url, player, sid, qid, 20))
    assert {r.status_code for r in replies} == {200}, [r.text for r in replies]
    assert len({r.content for r in replies}) == 1  # every reply is the first one
    first = replies[0].json()
    res = http.get(f"/api/quiz/sessions/{sid}/results", headers=quiz.auth).json()
    [me] = res["players"]
    assert len(me["answers"]) == 1 and me["score"] == first["score"] == first["points"]
    events = asyncio.run(score_changes({sid}, expected=1))
    assert len(events) == 1 and events[0].total == first["score"]


def test_deadlines_live_and_self_paced(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 2, limit_s=5)
    qids = quiz.question_ids
    live = quiz.open_session("live")["id"]
    paced = quiz.open_session("self_paced")["id"]
    p_live, p_paced = api.guest(), api.guest()
    assert join(http, p_live, session_id=live).status_code == 200
    assert join(http, p_paced, session_id=paced).status_code == 200
    quiz.advance(live)
    q_live = question(http, p_live, live).json()
    q_paced = question(http, p_paced, paced).json()
    # Past both deadlines plus the 250 ms network grace.
    time.sleep(max(q_live["deadline_ms"], q_paced["deadline_ms"]) / 1000 + 0.4 - time.time())
    r = answer(http, p_live, live, qids[0], quiz.answer_of(0))
    assert r.status_code == 409 and "deadline" in r.json()["detail"].lower()
    assert answer(http, p_paced, paced, qids[0], quiz.answer_of(0)).status_code == 409
    assert question(http, p_live, live).status_code == 409  # closed, nothing open
    # Self-paced: the missed question is skipped; the next one is handed out.
    nxt = question(http, p_paced, paced).json()
    assert nxt["index"] == 1
    a = answer(http, p_paced, paced, qids[1], quiz.answer_of(1)).json()
    assert a["streak"] == 1 and a["points"] == expected_points(a, True, 5, 0)


def test_wrong_session_and_not_joined(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 1)
    other = Quiz(api, 1)
    sid = quiz.open_session("self_paced")["id"]
    stranger, player = api.guest(), api.guest()
    qid = quiz.question_ids[0]
    assert answer(http, stranger, sid, qid, 0).status_code == 403
    assert question(http, stranger, sid).status_code == 403
    assert answer(http, stranger, str(uuid.uuid4()), qid, 0).status_code == 404
    assert answer(http, stranger, "no-such-session", qid, 0).status_code == 404
    assert question(http, stranger, str(uuid.uuid4())).status_code == 404
    assert join(http, stranger, session_id=str(uuid.uuid4())).status_code == 404
    assert join(http, stranger).status_code == 422
    assert join(http, player, session_id=sid).status_code == 200
    question(http, player, sid)
    # A question of another quiz is not open in this session.
    assert answer(http, player, sid, other.question_ids[0], 0).status_code == 409
    r = http.post(
        f"/api/quiz/sessions/{sid}/answers",
        headers=Api.auth(player),
        json={"question_id": qid, "choice": 9},
    )
    assert r.status_code == 422 and "choice" in r.json()["detail"]
    r = http.post(
        f"/api/quiz/sessions/{sid}/answers", headers=Api.auth(player), content=b"{not json"
    )
    assert r.status_code == 400
    assert (
        http.post(
            f"/api/quiz/sessions/{sid}/answers", json={"question_id": qid, "choice": 0}
        ).status_code
        == 401
    )


def test_demo_loader_is_idempotent(http: httpx.Client, capsys: pytest.CaptureFixture) -> None:
    from services.quiz import demo

    def run() -> dict:
        demo.main()
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    first, again = run(), run()
    assert first == again  # same host, quiz and lobby session
    assert first["code"].isdigit() and len(first["code"]) == 6
    tokens = http.post(
        "/api/iam/token",
        json={"username": first["host_username"], "password": first["host_password"]},
    )
    assert tokens.status_code == 200
    r = http.get(
        f"/api/quiz/sessions/{first['session_id']}/results", headers=Api.auth(tokens.json())
    )
    assert r.json()["state"] == "lobby" and r.json()["quiz_id"] == first["quiz_id"]
