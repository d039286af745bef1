"""One simulated player, speaking only the public protocol through nginx.

HTTP goes through a shared ``httpx.AsyncClient``; the socket.io side is a
python-socketio ``AsyncClient`` with reconnection on, which joins the session's
room again after every (re)connect. The player records what a real client
would know: every answer the server accepted (the first 200 reply), every
socket.io event, and the newest leaderboard snapshot it has seen. What it shares
with the other simulated players (when to retry, reading a join ack, the record of
answers and snapshots) is ``loadtests.playercore``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio

from loadtests.playercore import AnswerBook, BoardView, Retry, Snapshot, join_reply, retry_after_s
from tests.support.player import close_socket

__all__ = ["PlayerStats", "Seen", "SimPlayer", "Snapshot", "close_socket"]


@dataclass
class Seen:
    """One payload a player received (HTTP body or socket.io event)."""

    t: float
    channel: str  # "http" or "sio"
    name: str  # e.g. "GET /question" or the event name
    payload: Any


@dataclass
class PlayerStats:
    posts: int = 0  # answer POSTs sent, duplicates and retries included
    answers_tried: int = 0  # distinct (question) answers attempted
    retries: Counter = field(default_factory=Counter)  # status or "transport" -> count
    server_errors: int = 0  # 5xx replies seen (each one retried)
    connects: int = 0
    disconnects: int = 0
    join_failures: int = 0
    events: Counter = field(default_factory=Counter)


class SimPlayer:
    """A guest player in one session."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        tokens: dict,
        session_id: str,
        *,
        record_payloads: bool = False,
    ):
        self.http = http
        self.base_url = base_url
        self.tokens = tokens
        self.user_id: str = tokens["user"]["id"]
        self.nickname: str = tokens["user"]["nickname"]
        self.session_id = session_id
        self.headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        self.record_payloads = record_payloads
        self.stats = PlayerStats()
        # What the client saw accepted (question -> the first 200 reply), refused,
        # undecided; the same dicts as ``self.book``'s.
        self.book = AnswerBook()
        self.accepted = self.book.accepted
        self.accepted_at = self.book.accepted_at
        self.refused = self.book.refused
        self.undecided = self.book.undecided
        self.reply_mismatches = self.book.reply_mismatches
        self.board = BoardView(session_id)
        self.snapshots: list[Snapshot] = self.board.snapshots
        self.foreign: list[Seen] = []  # payloads of another session: a leak
        self.seen: list[Seen] = []
        self.sio: socketio.AsyncClient | None = None
        self.joined = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ HTTP

    async def request(
        self, method: str, path: str, *, json: Any = None, give_up_after: float = 25.0
    ) -> httpx.Response | None:
        """Send one call, retrying what a careful client retries; None after giving up."""
        retry = Retry(give_up_after=give_up_after)
        while True:
            try:
                r = await self.http.request(method, path, json=json, headers=self.headers)
            except httpx.TransportError:
                self.stats.retries["transport"] += 1
                status, hint = None, None
            else:
                if not retry.retryable(r.status_code):
                    if self.record_payloads and r.headers.get("content-type", "").startswith(
                        "application/json"
                    ):
                        self._saw("http", f"{method} {path}", r.json())
                    return r
                status, hint = r.status_code, None
                self.stats.retries[status] += 1
                if status >= 500:
                    self.stats.server_errors += 1
                if status == 429:
                    hint = retry_after_s(r.headers.get("retry-after"))
            if not retry.again(status, hint):
                return None
            await asyncio.sleep(retry.wait)

    async def join(self) -> dict:
        r = await self.request(
            "POST", "/api/quiz/sessions/join", json={"session_id": self.session_id}
        )
        assert r is not None and r.status_code == 200, f"join: {r and r.text}"
        return r.json()

    async def question(self) -> dict | None:
        """The question to answer now, or None (409: none to answer)."""
        r = await self.request("GET", f"/api/quiz/sessions/{self.session_id}/question")
        if r is None or r.status_code == 409:
            return None
        assert r.status_code == 200, f"question: {r.status_code} {r.text}"
        return r.json()

    async def answer(self, question_id: str, choices: list[int]) -> dict | None:
        """Submit one answer ``len(choices)`` times at once (the first choice is the real
        one; the others are repeats, possibly with another choice). Returns the accepted
        reply, or None when refused or undecided."""
        self.stats.answers_tried += 1
        self.stats.posts += len(choices)
        path = f"/api/quiz/sessions/{self.session_id}/answers"
        replies = await asyncio.gather(
            *[
                self.request("POST", path, json={"question_id": question_id, "choice": c})
                for c in choices
            ]
        )
        return self.book.record(
            question_id,
            [
                None if r is None else (r.status_code, r.json() if r.status_code == 200 else None)
                for r in replies
            ],
        )

    # ------------------------------------------------------------------ socket.io

    async def connect_socket(self, transport: str = "websocket", timeout: float = 15) -> None:
        """Connect, join the session's room, wait for the join ack."""
        sio = socketio.AsyncClient(
            reconnection=True,
            reconnection_delay=0.2,
            reconnection_delay_max=1.0,
            randomization_factor=0.3,
        )
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("*", self._on_event)
        self.sio = sio
        # Long-polling is sticky on ?sticky=<key> in nginx; websockets go anywhere.
        url = self.base_url + (f"?sticky={self.user_id}" if transport == "polling" else "")
        await sio.connect(
            url,
            auth={"token": self.tokens["access_token"]},
            transports=[transport],
            wait_timeout=10,
        )
        async with asyncio.timeout(timeout):
            await self.joined.wait()

    async def close(self) -> None:
        if self.sio is not None:
            await close_socket(self.sio)
        for t in list(self._tasks):
            t.cancel()

    async def _on_connect(self) -> None:
        self.stats.connects += 1
        # Rooms belong to a connection: every reconnect joins again. Run it as a task
        # so the client's read loop is free to deliver the ack.
        task = asyncio.create_task(self._join_room())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_disconnect(self, *_: Any) -> None:
        self.stats.disconnects += 1
        self.joined.clear()

    async def _join_room(self) -> None:
        assert self.sio is not None
        for _ in range(20):
            try:
                ack = await self.sio.call("join", {"session_id": self.session_id}, timeout=5)
            except Exception:
                self.stats.join_failures += 1
                await asyncio.sleep(0.2)
                if not self.sio.connected:
                    return  # the reconnect will join again
                continue
            self._saw("sio", "join ack", ack)
            reply = join_reply(ack)
            if reply.ok:
                if reply.board is not None:
                    self._snapshot(reply.board, "ack")
                self.joined.set()
                return
            self.stats.join_failures += 1
            await asyncio.sleep(max(0.2, reply.retry_after or 0))

    async def _on_event(self, event: str, *args: Any) -> None:
        payload = args[0] if args else None
        self.stats.events[event] += 1
        self._saw("sio", event, payload)
        if isinstance(payload, dict) and payload.get("session_id") not in (None, self.session_id):
            self.foreign.append(Seen(time.monotonic(), "sio", event, payload))
            return
        if event == "leaderboard" and isinstance(payload, dict):
            self._snapshot(payload, "event")

    # ------------------------------------------------------------------ records

    def _saw(self, channel: str, name: str, payload: Any) -> None:
        if self.record_payloads:
            self.seen.append(Seen(time.monotonic(), channel, name, payload))

    def _snapshot(self, board: dict, source: str) -> None:
        if self.board.receive(board, source) is None:
            self.foreign.append(Seen(time.monotonic(), "sio", f"leaderboard/{source}", board))

    @property
    def best(self) -> Snapshot | None:
        """The newest snapshot received (by version)."""
        return self.board.best

    @property
    def accepted_points(self) -> int:
        return self.book.points
