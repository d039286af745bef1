"""engine.io liveness from one task per process (realtime_sio/liveness.py), in
process: a python-socketio server with the lean manager (on the stack's Redis, a
channel of its own), built as the socket tier builds it (``monitor_clients=False``),
on uvicorn with the raw frame writer, pinging every second:

- a websocket that answers keeps getting pings about once per interval, pre-framed,
  past several intervals, with no ping task per socket after the first ping; a
  python-socketio client on long-polling stays connected the same way;
- a websocket that stops answering is disconnected once ``ping_timeout`` passed
  (the server's ``disconnect`` handler runs) and forgotten by the server; a
  long-polling socket that stops polling is timed out by the liveness task's sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import socketio
from websockets.asyncio.client import connect

from realtime_sio import jsonmsg
from realtime_sio.fanout import LeanRedisManager
from services.common.settings import get_settings
from tests.test_uvicorn_ws import serve

pytestmark = pytest.mark.stack

INTERVAL = 1
TIMEOUT = 1


class Server:
    def __init__(self) -> None:
        self.manager = LeanRedisManager(
            get_settings().redis_url, channel=f"test-live-{uuid.uuid4().hex[:8]}", json=jsonmsg
        )
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=self.manager,
            json=jsonmsg,
            ping_interval=INTERVAL,
            ping_timeout=TIMEOUT,
            monitor_clients=False,
        )
        self.connected: list[str] = []
        self.gone: list[tuple[str, Any]] = []
        self.left = asyncio.Event()

        @self.sio.event
        async def connect(sid: str, environ: dict, auth: object = None) -> None:
            self.connected.append(sid)

        @self.sio.event
        async def disconnect(sid: str, reason: Any = None) -> None:
            self.gone.append((sid, reason))
            self.left.set()


@asynccontextmanager
async def running() -> AsyncIterator[tuple[Server, int]]:
    srv = Server()
    try:
        async with serve(socketio.ASGIApp(srv.sio)) as url:
            yield srv, int(url.rsplit(":", 1)[1].strip("/"))
    finally:
        await srv.manager.liveness.stop()
        thread = getattr(srv.manager, "thread", None)  # the manager's Redis listener
        if thread is not None:
            thread.cancel()


def ping_tasks(srv: Server) -> int:
    """engine.io's own ping tasks (``AsyncSocket._send_ping``) for this server's sockets."""
    n = 0
    for t in asyncio.all_tasks():
        coro: Any = t.get_coro()
        if not getattr(coro, "__qualname__", "").endswith("_send_ping"):
            continue
        frame = getattr(coro, "cr_frame", None)
        sock = frame.f_locals.get("self") if frame is not None else None
        if sock is not None and sock.server is srv.sio.eio:
            n += 1
    return n


async def open_ws(port: int) -> Any:
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    ws = await connect(url, compression=None).__aenter__()
    opened = json.loads(str(await ws.recv())[1:])
    assert opened["pingInterval"] == INTERVAL * 1000
    await ws.send("40")
    assert str(await ws.recv()).startswith("40")
    return ws


async def test_a_socket_that_answers_pings_stays_with_one_ping_task_for_all() -> None:
    async with running() as (srv, port):
        ws = await open_ws(port)
        pings: list[float] = []
        try:
            deadline = time.monotonic() + 6 * INTERVAL
            while time.monotonic() < deadline:
                with_timeout = deadline - time.monotonic()
                try:
                    msg = await asyncio.wait_for(ws.recv(), max(with_timeout, 0.01))
                except TimeoutError:
                    break
                if msg == "2":
                    pings.append(time.monotonic())
                    await ws.send("3")
                    if len(pings) >= 2:
                        # engine.io's own task served the first ping only
                        assert ping_tasks(srv) == 0
            assert len(pings) >= 4, pings
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert all(0.5 * INTERVAL < g < INTERVAL + 2.0 for g in gaps), gaps
            assert srv.manager.liveness.pings >= 3
            assert not srv.gone
            assert len(srv.sio.eio.sockets) == 1
        finally:
            await ws.close()


async def test_a_polling_client_stays_connected_across_several_ping_intervals() -> None:
    async with running() as (srv, port):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(f"http://127.0.0.1:{port}", transports=["polling"])
        try:
            await asyncio.sleep(5 * INTERVAL)
            assert client.connected
            assert not srv.gone
            assert srv.manager.liveness.pings >= 3
        finally:
            await client.disconnect()


async def test_a_websocket_that_stops_answering_pings_is_disconnected_and_forgotten() -> None:
    async with running() as (srv, port):
        ws = await open_ws(port)
        try:
            answered = False
            # Answer the first ping (engine.io's own task), then stay silent.
            while True:
                msg = await asyncio.wait_for(ws.recv(), 5 * INTERVAL)
                if msg == "2":
                    if not answered:
                        answered = True
                        await ws.send("3")
                        continue
                    break  # the second ping (from the liveness task): not answered
            silent_from = time.monotonic()
            # engine.io's websocket reader gives up after ping_interval + ping_timeout
            # without a packet, the sweep after ping_timeout without a pong: whichever
            # comes first.
            await gone(srv, TIMEOUT + 3.0)
            assert time.monotonic() - silent_from >= TIMEOUT * 0.9
            await forgotten(srv)
        finally:
            await ws.close()


async def test_a_polling_socket_that_stops_polling_is_timed_out_by_the_sweep() -> None:
    """Nothing but the liveness task notices a long-polling client that went away."""
    async with running() as (srv, port), httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
        opened = json.loads((await http.get(base)).text[1:])
        url = f"{base}&sid={opened['sid']}"
        assert (await http.post(url, content="40")).text == "OK"
        assert (await http.get(url)).text.startswith("40")  # then it never polls again
        await gone(srv, INTERVAL + TIMEOUT + 3.0)
        assert srv.gone[0][1] == srv.sio.reason.PING_TIMEOUT
        assert srv.manager.liveness.timeouts >= 1
        await forgotten(srv)


async def gone(srv: Server, within: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(srv.left.wait(), within)
    assert srv.gone, "not disconnected after its ping went unanswered"


async def forgotten(srv: Server) -> None:
    for _ in range(100):  # at the next sweep at the latest
        if not srv.sio.eio.sockets:
            return
        await asyncio.sleep(0.05)
    assert not srv.sio.eio.sockets
