"""A live (host-driven) session that runs beside a fault scenario's self-paced game.

Live sessions keep shared state in Redis (state, open question, deadline), so a
Redis fault must not lose it: after the fault the open question still takes
answers, a socket that joins now gets the right state and question in its ack,
and the host can advance to the next question.
"""

from __future__ import annotations

import socketio

from tests.chaos.game import Game, Plan
from tests.chaos.player import close_socket
from tests.chaos.waiting import until


class LiveSide:
    def __init__(self, base_url: str):
        # A long time limit: the open question must outlive a slow fault on a busy box.
        self.game = Game(
            base_url, Plan(players=3, questions=3, mode="live", time_limit_s=90, seed=11)
        )

    async def _advance(self) -> dict:
        g = self.game
        r = await g.http.post(f"/api/quiz/sessions/{g.session_id}/advance", headers=g.host_headers)
        assert r.status_code == 200, f"advance: {r.status_code} {r.text}"
        return r.json()

    async def _answer_open_question(self, players: list) -> list[str]:
        problems = []
        for p in players:
            q = await p.question()
            if q is None:
                problems.append(f"live: {p.nickname} was handed no open question")
                continue
            if await p.answer(q["question_id"], [self.game.correct_choice(q)]) is None:
                problems.append(f"live: {p.nickname}'s answer to question {q['index']} refused")
        return problems

    async def before(self) -> None:
        """Set up, open question 0, one player answers it."""
        await self.game.setup()
        await self._advance()
        await until(lambda: all(p.stats.events["question"] for p in self.game.players), 10)
        await self._answer_open_question(self.game.players[:1])

    async def after(self) -> list[str]:
        """What must still work after the fault; returns problems."""
        g = self.game
        problems = await self._answer_open_question(g.players[1:])
        # A socket joining now: the ack must say running, question 0 (and no key).
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(
                g.base_url,
                auth={"token": g.players[0].tokens["access_token"]},
                transports=["websocket"],
                wait_timeout=10,
            )
            ack = await client.call("join", {"session_id": g.session_id}, timeout=10)
        finally:
            await close_socket(client)
        question = (ack.get("question") or {}) if isinstance(ack, dict) else {}
        if not (isinstance(ack, dict) and ack.get("ok") and ack.get("state") == "running"):
            problems.append(f"live: join ack after the fault: {ack!r:.300}")
        elif question.get("index") != 0 or "answer" in question:
            problems.append(f"live: join ack question after the fault: {question!r:.300}")
        # The host moves on; everyone gets question 1 and answers it.
        seen = [p.stats.events["question"] for p in g.players]
        result = await self._advance()
        if result.get("question_index") != 1:
            problems.append(f"live: advance after the fault gave {result}")
        if not await until(
            lambda: all(
                p.stats.events["question"] > n for p, n in zip(g.players, seen, strict=True)
            ),
            10,
        ):
            problems.append("live: not every player got question 1 after the fault")
        problems += await self._answer_open_question(g.players)
        return problems
