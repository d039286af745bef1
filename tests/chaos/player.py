"""One simulated player, speaking only the public protocol through nginx.

HTTP goes through a shared ``httpx.AsyncClient``; the socket.io side is a
python-socketio ``AsyncClient`` with reconnection on, which joins the session's
room again after every (re)connect. The player records what a real client
would know: every answer the server accepted (the first 200 reply), every
socket.io event, and the newest leaderboard snapshot it has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio

# Statuses a client retries: the request was not (or may not have been) handled.
RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass
class Snapshot:
    """A leaderboard snapshot as a client received it."""

    t: float
    version: int
    players: int
    scores: dict[str, int]
    source: str  # "event" or "ack"


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


async def close_socket(client: socketio.AsyncClient, timeout: float = 2.0) -> None:
    """Disconnect without waiting for a pending long-poll to return (a polling client's
    disconnect otherwise waits up to the server's ping interval, 20 s)."""
    try:
        async with asyncio.timeout(timeout):
            await client.disconnect()
    except Exception:
        with contextlib.suppress(Exception):
            await client.eio.disconnect(abort=True)


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
        # question_id -> the first 200 reply body (what the client saw accepted)
        self.accepted: dict[str, dict] = {}
        self.accepted_at: dict[str, float] = {}  # question_id -> when the 200 arrived
        self.refused: dict[str, int] = {}  # question_id -> final status (409, 403, ...)
        self.undecided: set[str] = set()  # gave up without a definitive reply
        self.reply_mismatches: list[str] = []  # a repeat whose reply differs from the first
        self.snapshots: list[Snapshot] = []
        self.best: Snapshot | None = None
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
        deadline = time.monotonic() + give_up_after
        delay = 0.05
        while True:
            wait = delay
            try:
                r = await self.http.request(method, path, json=json, headers=self.headers)
            except httpx.TransportError:
                self.stats.retries["transport"] += 1
            else:
                if r.status_code not in RETRY_STATUSES:
                    if self.record_payloads and r.headers.get("content-type", "").startswith(
                        "application/json"
                    ):
                        self._saw("http", f"{method} {path}", r.json())
                    return r
                self.stats.retries[r.status_code] += 1
                if r.status_code >= 500:
                    self.stats.server_errors += 1
                if r.status_code == 429:
                    with contextlib.suppress(ValueError):
                        wait = max(wait, float(r.headers.get("retry-after", 0)))
            if time.monotonic() + wait > deadline:
                return None
            await asyncio.sleep(wait)
            delay = min(delay * 2, 1.0)

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
        ok = [r.json() for r in replies if r is not None and r.status_code == 200]
        other = [r.status_code for r in replies if r is not None and r.status_code != 200]
        if ok:
            first = ok[0]
            if any(body != first for body in ok[1:]) or other:
                self.reply_mismatches.append(f"{question_id}: replies {ok} statuses {other}")
            if question_id not in self.accepted:
                self.accepted[question_id] = first
                self.accepted_at[question_id] = time.monotonic()
            return first
        if other:
            self.refused[question_id] = other[0]
        else:
            self.undecided.add(question_id)
        return None

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
            if isinstance(ack, dict) and ack.get("ok"):
                board = ack.get("leaderboard")
                if isinstance(board, dict):
                    self._snapshot(board, "ack")
                self.joined.set()
                return
            self.stats.join_failures += 1
            await asyncio.sleep(0.2)

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
        if board.get("session_id") != self.session_id:
            self.foreign.append(Seen(time.monotonic(), "sio", f"leaderboard/{source}", board))
            return
        snap = Snapshot(
            t=time.monotonic(),
            version=int(board["version"]),
            players=int(board["players"]),
            scores={e["user_id"]: int(e["score"]) for e in board["entries"]},
            source=source,
        )
        self.snapshots.append(snap)
        # Snapshots may arrive out of order: a client keeps the highest version.
        if self.best is None or snap.version > self.best.version:
            self.best = snap

    @property
    def accepted_points(self) -> int:
        return sum(int(a["points"]) for a in self.accepted.values())
