"""The socket tier's uvicorn websocket protocol (realtime_sio/uvicorn_ws.py), in
process: a real uvicorn server on a free port, a tiny ASGI app that uses the
``quizrt.raw_frames`` writer, and a real ``websockets`` client. Pre-framed frames
arrive intact and in order with the ASGI sends around them; the writer refuses
(writes nothing) before the handshake, under back-pressure, with
permessage-deflate and after the close."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

from realtime_sio.uvicorn_ws import EXTENSION, MAX_BUFFERED, RawFramesProtocol, text_frame

App = Callable[
    [dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]
]


@asynccontextmanager
async def serve(app: App, deflate: bool = False) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws=RawFramesProtocol,
        ws_per_message_deflate=deflate,
        ws_ping_interval=0,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # uvicorn's Server has a flag, no event
            if server.started:
                break
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def test_raw_frames_arrive_intact_in_order_with_asgi_sends_and_not_before_accept() -> None:
    results: dict[str, Any] = {}
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 200_000]

    async def app(scope: dict, receive: Any, send: Any) -> None:
        raw = scope["extensions"][EXTENSION]
        assert (await receive())["type"] == "websocket.connect"
        results["before_accept"] = raw["write"](text_frame(b"too early"))
        await send({"type": "websocket.accept"})
        for i, n in enumerate(sizes):
            await send({"type": "websocket.send", "text": f"asgi {i}"})
            body = (str(i) * n)[:n].encode()
            results.setdefault("raw", []).append(raw["write"](text_frame(body)))
            await asyncio.sleep(0.05)  # let the client drain (no back-pressure here)
        msg = await receive()  # the client's close
        results["after_close"] = raw["write"](text_frame(b"too late"))
        results["close"] = msg["type"]

    async with serve(app) as url:
        async with connect(url, compression=None, max_size=None) as ws:
            got = [await ws.recv() for _ in range(2 * len(sizes))]
        for _ in range(100):
            if "after_close" in results:
                break
            await asyncio.sleep(0.02)
    assert results["before_accept"] is False
    assert results["raw"] == [True] * len(sizes)
    expect: list[str] = []
    for i, n in enumerate(sizes):
        expect += [f"asgi {i}", (str(i) * n)[:n]]
    assert got == expect
    assert results["after_close"] is False
    assert results["close"] == "websocket.disconnect"


async def test_a_reader_that_stops_reading_makes_the_writer_refuse_and_loses_nothing() -> None:
    frame_bytes = 256 * 1024
    results: dict[str, Any] = {"written": 0}
    sent_all = asyncio.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        raw = scope["extensions"][EXTENSION]
        await receive()
        await send({"type": "websocket.accept"})
        i = 0
        # The raw path until it refuses (the kernel buffers fill, then uvicorn's):
        while raw["write"](text_frame(f"{i:08d}".encode() * (frame_bytes // 8))):
            i += 1
            if i > 2000:
                break
        results["written"] = i
        # the ordinary path waits for the transport, as uvicorn does
        for j in range(i, i + 5):
            await send({"type": "websocket.send", "text": f"{j:08d}" * (frame_bytes // 8)})
        results["total"] = i + 5
        sent_all.set()
        await receive()

    async with serve(app) as url:
        async with connect(url, compression=None, max_size=None, max_queue=1) as ws:
            await asyncio.sleep(1.0)  # not reading meanwhile
            assert 0 < results["written"] <= 2000, results
            got: list[str | bytes] = []
            while not (sent_all.is_set() and len(got) == results["total"]):
                got.append(await asyncio.wait_for(ws.recv(), 10))
    assert [int(str(m)[:8]) for m in got] == list(range(results["total"]))
    assert all(len(m) == frame_bytes for m in got)
    assert MAX_BUFFERED < frame_bytes * results["written"]


async def test_no_raw_frame_writer_once_permessage_deflate_is_negotiated() -> None:
    lent: list[bool] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        lent.append(EXTENSION in scope["extensions"])
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "compressed"})
        await receive()

    async with serve(app, deflate=True) as url:
        async with connect(url, compression="deflate") as ws:
            assert await ws.recv() == "compressed"
        async with connect(url, compression=None) as ws:  # the same server, no deflate
            assert await ws.recv() == "compressed"
    assert lent == [False, True]
