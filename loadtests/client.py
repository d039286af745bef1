"""Lean asyncio clients for the load generator: HTTP/1.1 keep-alive and socket.io.

Why not httpx and python-socketio's ``AsyncClient``: on a 2-core machine the load
generator competes with the stack for CPU, and a generic client costs several
times more per request and per received event than the protocol needs. These two
speak exactly the subset the platform uses (JSON over HTTP/1.1 with keep-alive;
engine.io v4 over websocket only, default namespace, text packets) and record the
receive time of every socket.io event before decoding it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from typing import Any

import msgspec

from loadtests.playercore import Retry, retry_after_s

_json_decode = msgspec.json.decode
_json_encode = msgspec.json.encode


class HttpError(Exception):
    """A response that the caller did not expect (status and body attached)."""

    def __init__(self, status: int, body: bytes, what: str = ""):
        super().__init__(f"{what}: HTTP {status} {body[:200]!r}")
        self.status = status
        self.body = body


class HttpConn:
    """One keep-alive HTTP/1.1 connection; one request at a time (no pipelining)."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self._host_header = f"{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, limit=1 << 22
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, bytes, str]:
        """Send one request; returns (status, body, Retry-After header or '').

        ``body`` is encoded to JSON when it is not already bytes. A connection
        closed by the server before the reply is reopened and the request sent
        once more (every call the generator makes is safe to repeat).
        """
        lines = [f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        if token:
            lines.append(f"Authorization: Bearer {token}\r\n")
        payload = b""
        if body is not None:
            payload = body if isinstance(body, bytes) else _json_encode(body)
            lines.append(f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n")
        lines.append("\r\n")
        raw = "".join(lines).encode() + payload
        async with self._lock:
            for attempt in (1, 2):
                if self._writer is None or self._writer.is_closing():
                    await self._open()
                try:
                    return await self._exchange(raw)
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.close()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _exchange(self, raw: bytes) -> tuple[int, bytes, str]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = -1
        chunked = False
        close = False
        retry_after = ""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
            elif name == b"retry-after":
                retry_after = value.strip().decode()
        if chunked:
            body = await self._read_chunked()
        elif length >= 0:
            body = await self._reader.readexactly(length)
        else:
            body = await self._reader.read()
            close = True
        if close:
            self.close()
        return status, body, retry_after

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        expect: tuple[int, ...] = (200, 201),
        retries: int = 30,
    ) -> Any:
        """A setup call: retried as ``playercore.Retry`` says (429 and 5xx, honouring
        Retry-After), JSON decoded."""
        retry = Retry(first=0.2, tries=retries, most_hint=1.0, jitter=True, give_up_after=600)
        while True:
            status, data, retry_after = await self.request(method, path, body, token)
            if status in expect:
                return _json_decode(data) if data else None
            if not retry.again(status, retry_after_s(retry_after)):
                break
            await asyncio.sleep(retry.wait)
        if retry.gave_up:
            raise HttpError(status, data, f"{method} {path} (still refused after {retries} tries)")
        raise HttpError(status, data, f"{method} {path}")


# --------------------------------------------------------------------------- socket.io

EventHandler = Callable[[str, Any, float, float], None]
"""(event name, decoded payload, monotonic receive time, wall-clock receive time)."""


class SocketClosed(Exception):
    """The socket.io connection ended (or was refused)."""


class Deferred:
    """Events whose decoding waits until the loop has had no such event for a while.

    The generator holds hundreds of sockets in one process, and one broadcast reaches
    them all in one burst. Each receipt is stamped when its bytes arrive, but the
    sockets are served one after another: decoding and recording one socket's event
    delayed the stamp of every socket served after it in the burst, which no real
    client (each on its own device) would see. Events named in ``prefixes`` (their
    JSON text's start, e.g. ``b'["leaderboard",'``) are only stamped and kept on
    arrival, and handed to their socket's ``on_event``, in arrival order, once
    ``quiet_s`` passed without another (at most ``most_s`` after the first kept).
    ``flush`` hands them over at once (the worker calls it before it reads results).
    """

    def __init__(self, prefixes: tuple[bytes, ...], quiet_s: float = 0.005, most_s: float = 0.2):
        self.prefixes = prefixes
        self.quiet_s = quiet_s
        self.most_s = most_s
        self._items: list[tuple[SioSocket, bytes, float, float]] = []
        self._first = self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, sock: SioSocket, body: bytes, t_mono: float, t_wall: float) -> None:
        if not self._items:
            self._first = t_mono
        self._last = t_mono
        self._items.append((sock, body, t_mono, t_wall))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.quiet_s, self._due)

    def _due(self) -> None:
        self._timer = None
        now = time.perf_counter()
        if now - self._last < self.quiet_s and now - self._first < self.most_s:
            self._timer = asyncio.get_running_loop().call_later(self.quiet_s, self._due)
            return
        self.flush()

    def flush(self) -> None:
        """Decode every kept event and hand it to its socket's ``on_event``, in order."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._items = self._items, []
        for sock, body, t_mono, t_wall in items:
            if sock.on_event is not None:
                name, data = _event(body)
                sock.on_event(name, data, t_mono, t_wall)


class SioSocket(asyncio.Protocol):
    """One socket.io client (engine.io v4, websocket transport, default namespace).

    ``on_event`` is called for every server event with its receive times, taken
    when the bytes arrived (before decoding); with ``deferred``, the events it names
    reach ``on_event`` later, in order, with those same times (see ``Deferred``).
    ``call`` sends an event with an ack and returns the ack's first argument.
    """

    def __init__(self, on_event: EventHandler | None = None, deferred: Deferred | None = None):
        self.on_event = on_event
        self.deferred = deferred
        self.transport: asyncio.Transport | None = None
        self.sid = ""
        self.closed = False
        self.close_reason = ""
        self._buf = bytearray()
        self._handshake: asyncio.Future[bytes] | None = None
        self._connected: asyncio.Future[Any] | None = None
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_ack = 1
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._token = ""

    # ---- connecting

    async def connect(
        self, host: str, port: int, token: str, path: str = "/socket.io/", timeout: float = 20
    ) -> None:
        """Open the websocket, then the default namespace with ``auth: {token}``."""
        loop = asyncio.get_running_loop()
        self._token = token
        self._handshake = loop.create_future()
        self._connected = loop.create_future()
        await asyncio.wait_for(loop.create_connection(lambda: self, host, port), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        assert self.transport is not None
        self.transport.write(
            (
                f"GET {path}?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(timeout):
            head = await self._handshake
            if not head.startswith(b"HTTP/1.1 101"):
                raise SocketClosed(f"websocket upgrade refused: {head[:120]!r}")
            await self._connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = self.close_reason or f"connection lost ({exc or 'eof'})"
        err = SocketClosed(self.close_reason)
        for fut in (self._handshake, self._connected, *self._acks.values()):
            if fut is not None and not fut.done():
                fut.set_exception(err)
        self._acks.clear()

    def close(self) -> None:
        """Close the websocket (client-initiated: not counted as a drop)."""
        if self.transport is not None and not self.closed:
            self.closed = True
            self.close_reason = "closed by client"
            try:
                self.transport.write(_frame(b"41", 0x1) + _frame(b"\x03\xe8", 0x8))
            except Exception:
                pass
            self.transport.close()

    # ---- sending

    def emit(self, event: str, data: Any) -> None:
        self._send(b"42" + _json_encode([event, data]))

    async def call(self, event: str, data: Any, timeout: float = 20) -> Any:
        """Emit with an ack; the ack's first argument."""
        ack_id = self._next_ack
        self._next_ack += 1
        fut = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        self._send(b"42" + str(ack_id).encode() + _json_encode([event, data]))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._acks.pop(ack_id, None)

    def _send(self, payload: bytes, opcode: int = 0x1) -> None:
        if self.closed or self.transport is None:
            raise SocketClosed(self.close_reason or "not connected")
        self.transport.write(_frame(payload, opcode))

    # ---- receiving

    def data_received(self, data: bytes) -> None:
        t_mono = time.perf_counter()
        t_wall = time.time()
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            self._upgraded = True
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_result(head)
            if not head.startswith(b"HTTP/1.1 101"):
                self.close_reason = f"upgrade refused: {head[:80]!r}"
                self.transport.close() if self.transport else None
                return
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hdr = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hdr = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            mask = b""
            if b1 & 0x80:
                mask = bytes(buf[pos + hdr : pos + hdr + 4])
                hdr += 4
            if n - pos < hdr + length:
                break
            payload = bytes(buf[pos + hdr : pos + hdr + length])
            pos += hdr + length
            if mask:
                payload = _xor(payload, mask)
            self._frame_received(b0 & 0x80, b0 & 0x0F, payload, t_mono, t_wall)
        if pos:
            del buf[:pos]

    def _frame_received(
        self, fin: int, opcode: int, payload: bytes, t_mono: float, t_wall: float
    ) -> None:
        if opcode == 0x9:  # websocket ping
            self._send(payload, 0xA)
            return
        if opcode == 0x8:
            self.close_reason = f"closed by server ({payload[2:].decode(errors='replace')})"
            self.closed = True
            if self.transport:
                self.transport.close()
            return
        if opcode in (0x1, 0x2, 0x0):
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
            self._packet(payload, t_mono, t_wall)

    def _packet(self, p: bytes, t_mono: float, t_wall: float) -> None:
        kind = p[:1]
        if kind == b"4":  # engine.io message: a socket.io packet
            sio = p[1:2]
            if sio == b"2":
                body = p[2:]
                i = 0
                while body[i : i + 1].isdigit():
                    i += 1
                ev = body[i:]
                if self.deferred is not None and ev.startswith(self.deferred.prefixes):
                    self.deferred.add(self, ev, t_mono, t_wall)
                    return
                name, data = _event(ev)
                if self.on_event is not None:
                    self.on_event(name, data, t_mono, t_wall)
            elif sio == b"3":
                body = p[2:]
                i = 0
                while body[i : i + 1].isdigit():
                    i += 1
                fut = self._acks.get(int(body[:i]))
                if fut is not None and not fut.done():
                    args = _json_decode(body[i:])
                    fut.set_result(args[0] if args else None)
            elif sio == b"0":
                info = _json_decode(p[2:]) if len(p) > 2 else {}
                self.sid = info.get("sid", "")
                if self._connected is not None and not self._connected.done():
                    self._connected.set_result(info)
            elif sio == b"4":
                self.close_reason = f"connect refused: {p[2:200].decode(errors='replace')}"
                if self._connected is not None and not self._connected.done():
                    self._connected.set_exception(SocketClosed(self.close_reason))
            elif sio == b"1":
                self.close_reason = "disconnected by server"
        elif kind == b"2":  # engine.io ping: answer at once, or the server drops us
            self._send(b"3" + p[1:])
        elif kind == b"0":  # engine.io open: now open the default namespace
            self._send(b"40" + _json_encode({"token": self._token}))
        elif kind == b"1":
            self.close_reason = "engine.io close"


def _event(body: bytes) -> tuple[str, Any]:
    arr = _json_decode(body)
    return arr[0], (arr[1] if len(arr) > 1 else None)


def _xor(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 requires clients to mask)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + _xor(payload, mask)
