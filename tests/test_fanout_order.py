"""The lean fan-out's order guarantees on the real stack, where the socket tier's
websockets take the pre-framed path (realtime_sio/uvicorn_ws.py) whenever their
send queue is empty and their writer idle:

- joins and leaves interleaved with room events, on both processes and both
  transports: every event emitted while a client is in the room arrives, in emit
  order, and none emitted after its ``leave`` was acknowledged;
- a websocket that stops reading while large room events pile up (the transport
  pushes back, the raw path steps aside) is neither dropped nor reordered: it gets
  every event in order once it reads again, and its next ``join`` still acks;
- the same with the socket read in a trickle while big events keep coming (the
  transport fills and drains over and over) and an ack queued among them;
- in process, deterministically: a room event delivered while a packet waits on
  the socket's queue goes behind it, never straight to the wire;
- on uvicorn, room events did go out as pre-framed writes (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import socketio
from websockets.asyncio.client import ClientConnection, connect

from contracts import LeaderboardEntry, RoomLeaderboard, to_payload
from services.common.redis import sio_manager
from services.common.rooms import get_emitter
from tests.conftest import Api
from tests.support.game import Board, open_board
from tests.support.player import Player
from tests.support.stack import sio_ports

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def board() -> AsyncIterator[Board]:
    async with open_board() as b:
        yield b


def board_event(session_id: str, version: int, nickname: str = "x") -> RoomLeaderboard:
    entries = [
        LeaderboardEntry(rank=r, user_id=f"u{r}", nickname=nickname, score=1000 - r)
        for r in range(1, 11)
    ]
    return RoomLeaderboard(session_id=session_id, version=version, players=10, entries=entries)


async def handled_before_now(
    manager: socketio.AsyncRedisManager, clients: list[Player], tag: str, timeout: float = 30
) -> None:
    """Every room event emitted so far has been handled by each client's socket.io
    process: a marker sent (through ``manager``, write-only) to each socket's own room
    travels the same pub/sub channel behind them, and a process handles that channel's
    messages in order."""
    marker = f"marker-{tag}"
    for c in clients:
        payload = to_payload(board_event(marker, 0))
        await manager.emit("leaderboard", payload, room=c.client.get_sid("/"), namespace="/")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for c in clients:
        while not c.versions(marker):
            assert loop.time() < deadline, f"no {marker} arrived"
            c.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.changed.wait(), 0.5)


def raw_deliveries(stack_dir: Path) -> float:
    ports = json.loads((stack_dir / "stack.json").read_text())["layout"]["metrics_ports"]
    total = 0.0
    for name, port in ports.items():
        if name.startswith("sio-"):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            total += sum(
                float(v)
                for v in re.findall(
                    r"^quizrt_sio_raw_frame_deliveries_total\{.*\} (\S+)$", text, re.M
                )
            )
    return total


async def test_joins_and_leaves_interleaved_with_room_events_keep_each_socket_in_order(
    api: Api, board: Board, stack_dir: Path
) -> None:
    s = await board.session(api.host(), [api.guest() for _ in range(4)])
    ports = sio_ports(stack_dir)
    plan = [(0, ["websocket"]), (0, ["polling"]), (1, ["websocket"]), (1, ["polling"])]
    clients = [Player(s.players[i]["access_token"], t) for i, (_, t) in enumerate(plan)]
    raw_before = raw_deliveries(stack_dir)
    emitter = get_emitter()
    markers = sio_manager(write_only=True)  # to each socket's own room
    base = (1 << 52) + uuid.uuid4().int % 1000 * 1000
    expected: list[int] = []
    v = 0
    try:
        await asyncio.gather(
            *(
                c.connect(f"http://127.0.0.1:{ports[p]}")
                for c, (p, _) in zip(clients, plan, strict=True)
            )
        )
        for _round in range(4):
            acks = await asyncio.gather(*(c.join(s.id) for c in clients))
            assert all(a["ok"] for a in acks), acks
            for _ in range(25):
                await emitter.emit("leaderboard", board_event(s.id, base + v), s.id)
                expected.append(v)
                v += 1
            await asyncio.gather(*(c.wait_for_version(base + v - 1, timeout=30) for c in clients))
            acks = await asyncio.gather(*(c.call("leave", {"session_id": s.id}) for c in clients))
            assert all(a["ok"] for a in acks), acks
            for _ in range(5):  # after every leave ack: nobody may get these
                await emitter.emit("leaderboard", board_event(s.id, base + v), s.id)
                v += 1
            # The next join must not overtake them: it comes over the client's own
            # socket, they come over the pub/sub channel.
            await handled_before_now(markers, clients, f"{s.id}-{_round}")
        # One last event after a final join.
        await asyncio.gather(*(c.join(s.id) for c in clients))
        await emitter.emit("leaderboard", board_event(s.id, base + v), s.id)
        expected.append(v)
        await asyncio.gather(*(c.wait_for_version(base + v, timeout=30) for c in clients))
        for c, (p, t) in zip(clients, plan, strict=True):
            got = [x - base for x in c.versions(s.id) if x >= base]
            assert got == expected, f"sio-{p + 1} {t[0]}: {got}"
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    if os.environ.get("QUIZ_SIO_SERVER", "uvicorn") == "uvicorn":
        assert raw_deliveries(stack_dir) > raw_before, "no pre-framed websocket delivery"


class RawSocket:
    """A socket.io client spoken by hand over one websocket, so the test decides when
    it reads (``max_queue=1``: the library stops reading the TCP socket as soon as
    one message waits, so the server's transport backs up)."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.acks: list[list] = []
        self.events: list[list] = []

    @classmethod
    async def open(cls, port: int, token: str) -> RawSocket:
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        ws = await connect(url, compression=None, max_size=None, max_queue=1).__aenter__()
        self = cls(ws)
        assert str(await ws.recv()).startswith("0")  # engine.io open
        await ws.send("40" + json.dumps({"token": token}))
        assert (await self.next_packet()).startswith("40")
        return self

    async def next_packet(self, timeout: float = 20) -> str:
        while True:
            msg = await asyncio.wait_for(self.ws.recv(), timeout)
            if msg == "2":  # engine.io ping
                await self.ws.send("3")
                continue
            return str(msg)

    async def call(self, ack_id: int, event: str, payload: dict) -> list:
        await self.ws.send(f"42{ack_id}" + json.dumps([event, payload]))
        prefix = f"43{ack_id}"
        while True:
            pkt = await self.next_packet()
            if pkt.startswith(prefix):
                return json.loads(pkt[len(prefix) :])
            self.take(pkt)

    def take(self, pkt: str) -> None:
        assert pkt.startswith("42["), pkt
        self.events.append(json.loads(pkt[2:]))

    async def close(self) -> None:
        await self.ws.close()


async def test_a_websocket_that_stops_reading_is_neither_dropped_nor_reordered(
    api: Api, board: Board, stack_dir: Path
) -> None:
    s = await board.session(api.host(), [api.guest() for _ in range(2)])
    ports = sio_ports(stack_dir)
    slow = await RawSocket.open(ports[0], s.players[0]["access_token"])
    brisk = Player(s.players[1]["access_token"])
    try:
        await brisk.connect(f"http://127.0.0.1:{ports[0]}")
        assert (await slow.call(1, "join", {"session_id": s.id}))[0]["ok"]
        assert (await brisk.join(s.id))["ok"]
        base = (1 << 52) + uuid.uuid4().int % 1000 * 1000
        n = 300
        big = "n" * 2000  # ~20 KB per event: 6 MB in all, more than the socket buffers hold
        emitter = get_emitter()
        for i in range(n):
            await emitter.emit("leaderboard", board_event(s.id, base + i, big), s.id)
        # The brisk reader on the same process is not held up by the slow one.
        await brisk.wait_for_version(base + n - 1, timeout=30)
        await asyncio.sleep(2)  # the slow one still has not read
        while len(slow.events) < n:
            slow.take(await slow.next_packet())
        versions = [e[1]["version"] - base for e in slow.events if e[0] == "leaderboard"]
        assert versions == list(range(n))
        assert all(e[1]["entries"][0]["nickname"] == big for e in slow.events)
        # Still connected and served in order: a join acks.
        assert (await slow.call(2, "join", {"session_id": s.id}))[0]["ok"]
        assert [v - base for v in brisk.versions(s.id) if v >= base] == list(range(n))
    finally:
        await asyncio.gather(slow.close(), brisk.close(), return_exceptions=True)


async def test_a_websocket_read_in_a_trickle_while_big_events_pour_in_keeps_emit_order(
    api: Api, board: Board, stack_dir: Path
) -> None:
    """The transport fills and drains over and over while events keep coming (and an
    ack is queued among them): the direct writes and the queued path alternate on the
    one socket, and it still sees every event once, in emit order."""
    s = await board.session(api.host(), [api.guest()])
    ports = sio_ports(stack_dir)
    slow = await RawSocket.open(ports[1], s.players[0]["access_token"])
    try:
        assert (await slow.call(1, "join", {"session_id": s.id}))[0]["ok"]
        base = (1 << 52) + uuid.uuid4().int % 1000 * 1000
        n = 200
        big = "t" * 10_000  # ~100 KB per event, 20 MB in all: far more than socket buffers
        emitter = get_emitter()

        async def pour() -> None:
            for i in range(n):
                await emitter.emit("leaderboard", board_event(s.id, base + i, big), s.id)
                await asyncio.sleep(0.005)

        async def trickle() -> None:
            await asyncio.sleep(0.5)  # let the buffers fill first
            acked = False
            while len(slow.events) < n:
                if not acked and len(slow.events) >= n // 2:
                    acked = True  # an ack queued among the room events
                    assert (await slow.call(2, "join", {"session_id": s.id}))[0]["ok"]
                    continue
                slow.take(await slow.next_packet())
                await asyncio.sleep(0.002)

        await asyncio.gather(pour(), trickle())
        versions = [e[1]["version"] - base for e in slow.events if e[0] == "leaderboard"]
        assert versions == list(range(n))
    finally:
        await slow.close()


async def test_a_room_event_never_overtakes_a_packet_already_queued_on_its_socket() -> None:
    """In process, deterministic: a python-socketio server with the lean manager (on
    the stack's Redis, a channel of its own) on uvicorn with the raw frame writer.
    A packet put on a websocket's queue (as an ack or a ping is) and a room event
    delivered in the same step: the event goes behind it, not straight to the wire;
    once the queue is empty and the writer idle again, events are written directly."""
    from engineio import packet as eio_packet
    from prometheus_client import REGISTRY
    from socketio import packet as sio_packet

    from realtime_sio import jsonmsg
    from realtime_sio.fanout import LeanRedisManager
    from services.common.settings import get_settings
    from tests.test_uvicorn_ws import serve

    manager = LeanRedisManager(
        get_settings().redis_url, channel=f"test-order-{uuid.uuid4().hex[:8]}", json=jsonmsg
    )
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, json=jsonmsg)
    sids: list[str] = []

    @sio.event
    async def connect(sid: str, environ: dict, auth: object = None) -> None:
        await sio.enter_room(sid, "r")
        sids.append(sid)

    def raw_count() -> float:
        return (
            REGISTRY.get_sample_value("quizrt_sio_raw_frame_deliveries_total", {"event": "e"})
            or 0.0
        )

    async with serve(socketio.ASGIApp(sio)) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        client = await RawSocket.open(port, "any")
        try:
            s = sio.eio.sockets[manager.eio_sid_from_sid(sids[0], "/")]
            for _ in range(200):  # the writer is back in its wait on the empty queue
                if s.__dict__.get("writer_idle"):
                    break
                await asyncio.sleep(0.01)
            before = raw_count()
            n = 20
            for k in range(n):
                queued = sio_packet.Packet(sio_packet.EVENT, namespace="/", data=["e", 2 * k])
                s.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, queued.encode()))
                assert manager.deliver("e", [2 * k + 1], "/", "r") == 1
                await asyncio.sleep(0.02)
            assert raw_count() == before  # the queue was never empty at those deliveries
            for k in range(2 * n, 3 * n):  # now nothing is queued: written directly
                manager.deliver("e", [k], "/", "r")
                await asyncio.sleep(0.005)
            while len(client.events) < 3 * n:
                client.take(await client.next_packet(timeout=10))
            assert [e[1] for e in client.events] == list(range(3 * n))
            assert raw_count() - before >= n - 1  # (a ping may have been queued meanwhile)
        finally:
            await client.close()
            thread = getattr(manager, "thread", None)  # the manager's Redis listener
            if thread is not None:
                thread.cancel()
