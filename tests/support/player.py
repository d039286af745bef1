"""A python-socketio client that records every ``leaderboard`` event with the time it
arrived, and the answer-to-board latencies measured with it.

It is the tests' probe of the socket protocol: it hands back the raw acks and
payloads (refusals, query-string tokens and forged tokens included) for the tests to
assert on. What it shares with the other simulated players (``tests/chaos/player.py``,
``loadtests/players.py``, ``loadtests/locustfile.py``) is ``loadtests.playercore``,
and ``close_socket`` here, which every python-socketio client of the tests uses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import socketio


class Player:
    """A socket.io client that records ``leaderboard`` events (payload, arrival time)."""

    def __init__(self, token: str | None, transports: list[str] | None = None):
        self.token = token
        self.transports = transports or ["websocket"]
        self.client = socketio.AsyncClient(reconnection=False)
        self.boards: list[tuple[dict, float]] = []
        self.changed = asyncio.Event()
        self.client.on("leaderboard", self._on_board)

    async def _on_board(self, data: dict) -> None:
        self.boards.append((data, time.time()))
        self.changed.set()

    async def connect(self, url: str, *, via_query: bool = False) -> None:
        if via_query:
            sep = "&" if "?" in url else "?"
            await self.client.connect(
                f"{url}{sep}token={self.token}", transports=self.transports, wait_timeout=5
            )
        else:
            await self.client.connect(
                url, auth={"token": self.token}, transports=self.transports, wait_timeout=5
            )

    async def join(self, session_id: Any) -> dict:
        return await self.client.call("join", {"session_id": session_id}, timeout=5)

    async def call(self, event: str, *args: Any) -> Any:
        return await self.client.call(event, *args, timeout=5)

    def versions(self, session_id: str | None = None) -> list[int]:
        return [
            d["version"]
            for d, _ in self.boards
            if session_id is None or d["session_id"] == session_id
        ]

    async def wait_for_version(self, version: int, timeout: float = 10) -> dict:
        """The first received snapshot with at least ``version``."""
        deadline = time.monotonic() + timeout
        while True:
            for d, _ in self.boards:
                if d["version"] >= version:
                    return d
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no snapshot >= {version}; got {self.versions()}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass

    async def close(self) -> None:
        await close_socket(self.client)


async def close_socket(client: socketio.AsyncClient, timeout: float = 2.0) -> None:
    """Disconnect without waiting for a pending long-poll to return: a clean polling
    disconnect waits for it, and the server only ends it at its next ping (~20 s);
    closing the HTTP session ends it."""
    if not client.connected:
        return
    if client.transport() == "polling":
        await client.eio.disconnect(abort=True)
        return
    try:
        async with asyncio.timeout(timeout):
            await client.disconnect()
    except Exception:
        with contextlib.suppress(Exception):
            await client.eio.disconnect(abort=True)


def latencies_ms(replies: list[tuple[int, float]], player: Player) -> list[float]:
    """For each answer: from its reply to the first `leaderboard` event at its version or later."""
    out = []
    for version, t_reply in replies:
        if version <= 0:
            continue
        got = [t for d, t in player.boards if d["version"] >= version]
        if got:
            out.append((min(got) - t_reply) * 1000)
    return out
