"""The socket tier's uvicorn websocket protocol (realtime_sio/uvicorn_ws.py), in
process: a real uvicorn server on a free port, a tiny ASGI app that uses the
``quizrt.raw_frames`` writer, and a real ``websockets`` client. Pre-framed frames
arrive intact and in order with the ASGI sends around them; the writer refuses
(writes nothing) before the handshake, under back-pressure, with
permessage-deflate and after the close."""

from __future__ import annotations

import asyncio
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
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


async def test_the_socket_tier_serves_its_port_and_its_unix_socket_in_one_process() -> None:
    """``python -m realtime_sio.serve --uds``, as the stack starts it: the same app on
    the TCP port (health checks, tests) and on the Unix socket (the gateway's hop)."""
    import sys

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    tmp = tempfile.TemporaryDirectory(prefix="sio")  # short: a Unix socket path
    uds = Path(tmp.name) / "s.sock"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "realtime_sio.serve", "--port", str(port), "--uds", str(uds),
        "--app", "loadtests.floors.bare_http:app",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    body = b'{"question_id":"q","choice":1}'
    request = (
        b"POST /api/quiz/sessions/s/answers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )

    async def ask(open_conn: Callable[[], Awaitable[Any]]) -> bytes:
        for _ in range(300):
            try:
                reader, writer = await open_conn()
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the server never listened")
        writer.write(request)
        reply = await reader.read()
        writer.close()
        return reply

    try:
        by_tcp = await ask(lambda: asyncio.open_connection("127.0.0.1", port))
        by_unix = await ask(lambda: asyncio.open_unix_connection(str(uds)))
        for reply in (by_tcp, by_unix):
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            assert b'"question_id":"q"' in reply
        assert stat.S_IMODE(uds.stat().st_mode) == 0o600  # nginx runs as this user
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert not uds.exists(), "the socket file outlived its server"
    assert b"Traceback" not in err, err.decode(errors="replace")
    tmp.cleanup()
