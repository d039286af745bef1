"""Room events of a live session as a socket.io client in the room sees them: players
joining, each question opening (never with its answer), each question closing once
(by the host's advance or by its deadline, with two quiz processes running the
deadline closer), and the end with the final top 10."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from infra.stack import read_layout
from tests.support.api import Api, next_loopback, unique
from tests.support.game import Quiz, questions

pytestmark = pytest.mark.stack

EVENTS = ("session_state", "question", "question_closed", "session_ended")


class Watcher:
    """A socket.io client that records the session's room events in order."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, dict]] = []
        for name in EVENTS:
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: dict) -> None:
            self.events.append((name, data))

        return record

    def of(self, name: str) -> list[dict]:
        return [d for n, d in self.events if n == name]

    async def wait_for(self, name: str, count: int = 1, timeout_s: float = 8.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.of(name)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} x {name} expected; got {self.events}")
            await asyncio.sleep(0.02)
        return self.of(name)


async def test_live_room_events_and_deadline_close_once(base_url: str) -> None:
    # Its own source address: the sign-up and login limits count per address.
    transport = httpx.AsyncHTTPTransport(local_address=next_loopback())
    async with httpx.AsyncClient(base_url=base_url, timeout=20, transport=transport) as http:
        name, pw = unique("host"), "correct horse 9"
        assert (
            await http.post("/api/iam/users", json={"username": name, "password": pw})
        ).status_code == 201
        host = (await http.post("/api/iam/token", json={"username": name, "password": pw})).json()
        player = (await http.post("/api/iam/guests", json={"nickname": unique("p")})).json()
        hauth, pauth = Api.auth(host), Api.auth(player)
        r = await http.post(
            "/api/quiz/quizzes",
            headers=hauth,
            json={"title": "events", "questions": questions(2, limit_s=5)},
        )
        quiz_id = r.json()["id"]
        qids = (await http.get(f"/api/quiz/quizzes/{quiz_id}", headers=hauth)).json()[
            "question_ids"
        ]
        s = (
            await http.post(
                "/api/quiz/sessions", headers=hauth, json={"quiz_id": quiz_id, "mode": "live"}
            )
        ).json()
        sid = s["id"]

        watcher = Watcher()
        await watcher.client.connect(
            base_url, auth={"token": host["access_token"]}, transports=["websocket"], wait_timeout=5
        )
        try:
            ack = await watcher.client.call("join", {"session_id": sid}, timeout=5)
            assert ack["ok"], ack

            r = await http.post("/api/quiz/sessions/join", headers=pauth, json={"code": s["code"]})
            assert r.status_code == 200
            [joined] = await watcher.wait_for("session_state")
            assert (joined["state"], joined["players"]) == ("lobby", 1)

            await http.post(f"/api/quiz/sessions/{sid}/advance", headers=hauth)
            [q0] = await watcher.wait_for("question")
            assert (q0["question_id"], q0["index"], q0["count"]) == (qids[0], 0, 2)
            assert "answer" not in q0
            r = await http.post(
                f"/api/quiz/sessions/{sid}/answers",
                headers=pauth,
                json={"question_id": qids[0], "choice": 2},
            )
            assert r.status_code == 200

            # The deadline passes: question_closed once, with the answer and the counts.
            wait = q0["deadline_ms"] / 1000 - time.time()
            [closed] = await watcher.wait_for("question_closed", timeout_s=wait + 3)
            assert closed["session_id"] == sid and closed["question_id"] == qids[0]
            assert (closed["answer"], closed["distribution"]) == (0, [0, 0, 1])
            assert closed["index"] == 0

            await http.post(f"/api/quiz/sessions/{sid}/advance", headers=hauth)
            await watcher.wait_for("question", 2)
            # The host closes question 1 before its deadline by advancing past it.
            r = await http.post(f"/api/quiz/sessions/{sid}/advance", headers=hauth)
            assert r.json() == {"state": "ended", "question_index": 1}
            [ended] = await watcher.wait_for("session_ended")
            assert ended["players"] == 1
            assert [e["user_id"] for e in ended["entries"]] == [player["user"]["id"]]
            closes = await watcher.wait_for("question_closed", 2)
            assert closes[1]["question_id"] == qids[1] and closes[1]["distribution"] == [0, 0, 0]
            assert watcher.of("session_state")[-1]["state"] == "ended"
            await asyncio.sleep(1.0)  # a second close of either question would show now
            assert len(watcher.of("question_closed")) == 2, watcher.events
        finally:
            await watcher.client.disconnect()


async def test_joins_through_both_quiz_processes_give_ordered_player_counts(
    base_url: str, http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    """Players joining at once through both quiz processes: their `session_state`
    events may arrive in any order, but each carries the board version its count was
    read at, so the newest version has the full count and counts grow with versions."""
    ports = read_layout(stack_dir).quiz_ports
    assert len(ports) >= 2
    quiz = Quiz(api, 1, limit_s=30)
    sid = quiz.open_session("live")["id"]
    guests = [api.guest() for _ in range(12)]
    watcher = Watcher()
    await watcher.client.connect(
        base_url,
        auth={"token": quiz.host["access_token"]},
        transports=["websocket"],
        wait_timeout=5,
    )
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=20) for p in ports]
    try:
        ack = await watcher.client.call("join", {"session_id": sid}, timeout=5)
        assert ack["ok"], ack
        replies = await asyncio.gather(
            *[
                clients[i % len(clients)].post(
                    "/api/quiz/sessions/join", headers=Api.auth(g), json={"session_id": sid}
                )
                for i, g in enumerate(guests)
            ]
        )
        assert {r.status_code for r in replies} == {200}, [r.text for r in replies]

        def newest() -> dict | None:
            states = watcher.of("session_state")
            return max(states, key=lambda e: e["version"]) if states else None

        deadline = time.monotonic() + 8
        while (n := newest()) is None or n["players"] < len(guests):
            assert time.monotonic() < deadline, watcher.events
            await asyncio.sleep(0.05)
        states = watcher.of("session_state")
        assert all(e["version"] > 0 for e in states), states
        by_version = [e["players"] for e in sorted(states, key=lambda e: e["version"])]
        assert by_version == sorted(by_version), states
        assert n["players"] == len(guests)

        # The question opening reads the count and version together too.
        advanced = await clients[0].post(f"/api/quiz/sessions/{sid}/advance", headers=quiz.auth)
        assert advanced.status_code == 200, advanced.text
        await watcher.wait_for("question")
        deadline = time.monotonic() + 8
        while not [e for e in watcher.of("session_state") if e["state"] == "running"]:
            assert time.monotonic() < deadline, watcher.events
            await asyncio.sleep(0.05)
        [running] = [e for e in watcher.of("session_state") if e["state"] == "running"]
        assert (running["players"], running["version"]) == (len(guests), n["version"])
    finally:
        await watcher.client.disconnect()
        for c in clients:
            await c.aclose()
