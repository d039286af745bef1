"""Hostile socket.io clients, through nginx: malformed, unknown and oversized
events, joining a session one is not part of, and floods from one socket. The
server refuses or drops them, never crashes (the socket.io processes in
stack.json stay alive), never hands out another session's data, and limits
events per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import socketio

from tests.chaos.faults import dead_processes, processes
from tests.chaos.game import Game, Plan
from tests.chaos.player import SimPlayer, close_socket
from tests.chaos.waiting import until

pytestmark = pytest.mark.stack


@pytest_asyncio.fixture(scope="module")
async def two_games(base_url: str) -> AsyncIterator[tuple[Game, Game]]:
    """Two self-paced sessions, two players each, sockets joined to their own rooms."""
    a = Game(base_url, Plan(players=2, questions=4, seed=1))
    b = Game(base_url, Plan(players=2, questions=4, seed=2))
    await asyncio.gather(a.setup(), b.setup())
    yield a, b
    await asyncio.gather(a.close(), b.close())


@pytest.fixture(autouse=True)
def sio_processes_survive(stack_dir: Path) -> Iterator[None]:
    """Every test here ends with the same socket.io processes alive as before it."""
    before = {n: pid for n, pid in processes(stack_dir).items() if n.startswith("sio-")}
    yield
    after = {n: pid for n, pid in processes(stack_dir).items() if n.startswith("sio-")}
    assert after == before, f"socket.io processes changed: {before} -> {after}"
    assert not dead_processes(stack_dir), f"dead: {dead_processes(stack_dir)}"


async def _socket(base_url: str, token: str, transport: str = "websocket") -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(base_url, auth={"token": token}, transports=[transport], wait_timeout=10)
    return client


async def _call(client: socketio.AsyncClient, event: str, data: Any, timeout: float = 3) -> Any:
    """The ack, or the string "timeout"/"disconnected" when none came."""
    try:
        return await client.call(event, data, timeout=timeout)
    except socketio.exceptions.TimeoutError:
        return "timeout"
    except socketio.exceptions.BadNamespaceError:
        return "disconnected"


def _refused(ack: Any) -> bool:
    """An error ack, or no ack at all: both count as refused; never ok."""
    if isinstance(ack, dict):
        return ack.get("ok") is False and set(ack) <= {"ok", "error"}
    return ack in ("timeout", "disconnected")


MALFORMED_JOINS: list[Any] = [
    None,
    "a string",
    12345,
    3.5,
    True,
    [],
    ["session_id"],
    {},
    {"session_id": None},
    {"session_id": 42},
    {"session_id": ["x"]},
    {"session_id": {"$ne": ""}},
    {"session_id": "*"},
    {"session_id": "' or 1=1 --"},
    {"session_id": "../../etc/passwd"},
    {"session_id": "\x00\x01"},
    {"session_id": "x" * 5000},
    {"sessionid": "typo"},
]


async def test_malformed_join_payloads_are_refused(
    two_games: tuple[Game, Game], base_url: str
) -> None:
    a, _ = two_games
    p = a.players[0]
    client = await _socket(base_url, p.tokens["access_token"])
    try:
        for payload in MALFORMED_JOINS:
            ack = await _call(client, "join", payload)
            assert _refused(ack), f"join {payload!r:.60} -> {ack!r:.200}"
            await asyncio.sleep(0.06)  # stay under the per-socket event rate
        # Several arguments instead of one object.
        ack = await _call(client, "join", ({"session_id": a.session_id}, "extra"))
        assert _refused(ack), ack
        await asyncio.sleep(0.06)
        # The socket still works for a proper join afterwards.
        ack = await _call(client, "join", {"session_id": a.session_id})
        assert isinstance(ack, dict) and ack.get("ok") is True, ack
    finally:
        await client.disconnect()


async def test_unknown_and_server_only_events_are_refused_and_not_relayed(
    two_games: tuple[Game, Game], base_url: str
) -> None:
    """A client cannot speak the server's events into a room (e.g. a fake leaderboard)."""
    a, _ = two_games
    attacker, witness = a.players
    client = await _socket(base_url, attacker.tokens["access_token"])
    before = sum(witness.stats.events.values())
    try:
        ack = await _call(client, "join", {"session_id": a.session_id})
        assert ack.get("ok") is True, ack
        fake = {
            "session_id": a.session_id,
            "version": 10**15,
            "players": 1,
            "entries": [{"rank": 1, "user_id": attacker.user_id, "nickname": "x", "score": 10**6}],
        }
        for event in (
            "leaderboard",
            "question_closed",
            "session_ended",
            "question",
            "hack",
            "x" * 300,
        ):
            await asyncio.sleep(0.06)
            ack = await _call(client, event, fake)
            assert _refused(ack), f"{event}: {ack}"
        await asyncio.sleep(0.5)
        assert sum(witness.stats.events.values()) == before, "a client's event reached the room"
    finally:
        await client.disconnect()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_oversized_payload_is_dropped_without_harm(
    two_games: tuple[Game, Game], base_url: str, transport: str
) -> None:
    a, _ = two_games
    p = a.players[0]
    big = await _socket(base_url, p.tokens["access_token"], transport)
    ack = await _call(big, "join", {"session_id": "x" * 1_000_000}, timeout=5)
    assert _refused(ack), f"{ack!r:.200}"
    await close_socket(big)
    # Others on the tier are unaffected: a new socket joins fine.
    ok = await _socket(base_url, p.tokens["access_token"], transport)
    try:
        ack = await _call(ok, "join", {"session_id": a.session_id})
        assert isinstance(ack, dict) and ack.get("ok") is True, ack
    finally:
        await close_socket(ok)


async def test_joining_another_session_is_refused_and_leaks_nothing(
    two_games: tuple[Game, Game], base_url: str
) -> None:
    a, b = two_games
    intruder = b.players[0]  # a player of B
    client = await _socket(base_url, intruder.tokens["access_token"])
    got: list[tuple[str, Any]] = []
    client.on("*", lambda event, *args: got.append((event, args)))
    try:
        ack = await _call(client, "join", {"session_id": a.session_id})
        assert _refused(ack), f"an outsider joined: {ack}"
        await asyncio.sleep(0.06)
        # B's host is a host, but not A's.
        host_client = await _socket(base_url, b.host_tokens["access_token"])
        try:
            ack = await _call(host_client, "join", {"session_id": a.session_id})
            assert _refused(ack), f"another session's host joined: {ack}"
        finally:
            await host_client.disconnect()
        # `leave` of a room one is not in changes nothing and reveals nothing.
        await asyncio.sleep(0.06)
        ack = await _call(client, "leave", {"session_id": a.session_id})
        assert not (isinstance(ack, dict) and set(ack) - {"ok", "error"}), ack
        # Activity in A: its players answer, its board changes, events go out.
        player = a.players[0]
        q = await player.question()
        assert q is not None
        before = player.stats.events["leaderboard"]
        await player.answer(q["question_id"], [a.correct_choice(q)])
        assert await until(lambda: player.stats.events["leaderboard"] > before, 10), (
            "A's own player got no event"
        )
        await asyncio.sleep(0.3)
        leaked = [(e, args) for e, args in got if a.session_id in repr(args)]
        assert not leaked, f"the intruder received A's data: {leaked[:3]}"
    finally:
        await client.disconnect()


async def test_event_flood_is_rate_limited_per_socket(
    two_games: tuple[Game, Game], base_url: str
) -> None:
    a, _ = two_games
    flooder_player, bystander_player = a.players
    flooder = await _socket(base_url, flooder_player.tokens["access_token"])
    bystander = await _socket(base_url, bystander_player.tokens["access_token"])
    try:
        n = 300
        t0 = time.monotonic()
        acks = await asyncio.gather(
            *[_call(flooder, "join", {"session_id": a.session_id}, timeout=10) for _ in range(n)]
        )
        elapsed = time.monotonic() - t0
        ok = sum(1 for x in acks if isinstance(x, dict) and x.get("ok") is True)
        limited = sum(1 for x in acks if isinstance(x, dict) and x.get("error") == "rate limited")
        dropped = sum(1 for x in acks if isinstance(x, str))
        # The bucket: QUIZ_SIO_EVENTS_PER_SECOND (20) per second, bursts of the same size.
        assert ok <= 20 + 20 * elapsed + 5, f"{ok} of {n} accepted in {elapsed:.2f}s"
        assert limited + dropped >= n - ok and limited > 0, (ok, limited, dropped)
        # Per socket: another socket of the same session is served meanwhile.
        ack = await _call(bystander, "join", {"session_id": a.session_id})
        assert isinstance(ack, dict) and ack.get("ok") is True, ack
        # Fire-and-forget spam (no acks) does not hurt the tier either.
        for _ in range(2000):
            await flooder.emit("spam", {"x": 1})
        # The bucket refills once the spam has been drained (which takes longer on a
        # busy machine): the flooder is served again, or was disconnected.
        deadline = time.monotonic() + 15
        while True:
            await asyncio.sleep(1.2)
            ack = await _call(flooder, "join", {"session_id": a.session_id})
            limited = isinstance(ack, dict) and ack.get("error") == "rate limited"
            if not limited or time.monotonic() > deadline:
                break
        assert (isinstance(ack, dict) and ack.get("ok") is True) or ack == "disconnected", ack
        ack = await _call(bystander, "join", {"session_id": a.session_id})
        assert isinstance(ack, dict) and ack.get("ok") is True, ack
    finally:
        for c in (flooder, bystander):
            with contextlib.suppress(Exception):
                await c.disconnect()


async def test_room_events_still_flow_after_the_abuse(two_games: tuple[Game, Game]) -> None:
    """After everything above, a normal player still gets the leaderboard in real time."""
    _, b = two_games
    p: SimPlayer = b.players[1]
    q = await p.question()
    assert q is not None
    before = p.stats.events["leaderboard"]
    await p.answer(q["question_id"], [b.correct_choice(q)])
    assert await until(lambda: p.stats.events["leaderboard"] > before, 10)
