"""The lean fan-out (realtime_sio/fanout.py) on the real stack: two socket.io
processes, websocket and long-polling clients (python-socketio's client), room
events published through Redis back to back. Every client gets every event, in
emit order, and a socket closing in the middle harms nobody else."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from contracts import RoomLeaderboard
from services.common.rooms import RoomEmitter, get_emitter
from services.common.settings import get_settings
from tests.conftest import Api
from tests.support.game import Board, open_board
from tests.support.player import Player
from tests.support.stack import sio_ports

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def board() -> AsyncIterator[Board]:
    async with open_board() as b:
        yield b


# QUIZRT_FANOUT_ROUNDS=N repeats the test (to look for rare reorderings or losses).
@pytest.mark.parametrize("round_", range(int(os.environ.get("QUIZRT_FANOUT_ROUNDS", "1"))))
async def test_back_to_back_room_events_reach_every_transport_on_both_processes_in_order(
    api: Api, board: Board, stack_dir: Path, round_: int
) -> None:
    s = await board.session(api.host(), [api.guest() for _ in range(5)])
    ports = sio_ports(stack_dir)
    assert len(ports) >= 2
    plan = [(0, ["websocket"]), (0, ["polling"]), (1, ["websocket"]), (1, ["polling"])]
    clients = [Player(s.players[i]["access_token"], t) for i, (_, t) in enumerate(plan)]
    leaver = Player(s.players[4]["access_token"])
    try:
        urls = [f"http://127.0.0.1:{ports[p]}" for p, _ in plan]
        await asyncio.gather(
            *(c.connect(u) for c, u in zip(clients, urls, strict=True)),
            leaver.connect(urls[0]),
        )
        acks = await asyncio.gather(*(c.join(s.id) for c in [*clients, leaver]))
        assert all(a["ok"] for a in acks), acks
        base = (1 << 52) + uuid.uuid4().int % 1000 * 1000
        n = 300
        emitter = get_emitter()
        for i in range(n):
            await emitter.emit(
                "leaderboard",
                RoomLeaderboard(session_id=s.id, version=base + i, players=5, entries=[]),
                s.id,
            )
            if i == n // 3:
                await leaver.close()  # gone mid-stream: the others must not notice
        await asyncio.gather(
            *(c.wait_for_version(base + n - 1, timeout=30) for c in clients),
            return_exceptions=True,
        )
        seen = {
            f"sio-{p + 1} {t[0]}": [v - base for v in c.versions(s.id) if v >= base]
            for c, (p, t) in zip(clients, plan, strict=True)
        }
        summary = {k: (len(v), v[-1:]) for k, v in seen.items()}
        for name, got in seen.items():
            assert got == list(range(n)), f"{name}: {len(got)} of {n}; all: {summary}"
    finally:
        await asyncio.gather(*(c.close() for c in [*clients, leaver]), return_exceptions=True)


async def test_an_emitter_used_from_a_second_event_loop_publishes_each_event_once() -> None:
    """A process that runs several event loops (the test workers do) uses the one room
    emitter from each: every emit reaches the socket.io channel exactly once. (With the
    first loop's Redis connection the publish went out, its reply could not be read,
    and the manager's retry published the event again.)"""
    settings = get_settings()
    listener = Redis.from_url(settings.redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(settings.sio_channel)
    emitter = RoomEmitter()
    room = f"loops-{uuid.uuid4().hex}"
    event = RoomLeaderboard(session_id=room, version=1, players=0, entries=[])
    try:
        # The first emit from a loop of its own, in a thread, as a second test loop does.
        await asyncio.to_thread(asyncio.run, emitter.emit("leaderboard", event, room))
        await emitter.emit("leaderboard", event, room)  # then from this loop
        # Both arrive at once; a second copy would come right behind its original.
        seen = 0
        async with asyncio.timeout(10):
            while seen < 2:
                seen += await _room_messages(pubsub, room, 0.2)
        seen += await _room_messages(pubsub, room, 0.5)
        assert seen == 2
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def _room_messages(pubsub: Any, room: str, within_s: float) -> int:
    """How many messages naming ``room`` the subscription gets within ``within_s``."""
    n = 0
    deadline = asyncio.get_running_loop().time() + within_s
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        msg = await pubsub.get_message(timeout=left)
        n += msg is not None and room.encode() in msg["data"]
    return n
